"""The volunteer client: task loop, mutators, command runner, hardware detection."""
