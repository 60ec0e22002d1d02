"""autoswarm: autoresearch on a swarm of machines.

This package holds what the coordinator and the worker share: the generated wire contract
(`autoswarm.v1`), the study file schema, bundles, and the command line.
"""

__version__ = "0.1.0"
