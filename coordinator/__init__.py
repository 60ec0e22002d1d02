"""The autoswarm coordinator: holds the champion, leases tasks, decides acceptance."""
