"""The verifiers plugin `cuma-gym`: verifiers loads an environment by the name of an installed package, so
`--env.taskset.id cuma-gym` (or `vf.load_environment`) imports this module. Everything lives in
`cuma_env.integrations.verifiers`; this package only exports its taskset and env under the plugin id.
"""

from cuma_env.integrations.verifiers import CuMaTaskset, CuMaTasksetConfig, CuMaVoteEnv, CuMaVoteEnvConfig

__all__ = ["CuMaTaskset", "CuMaTasksetConfig", "CuMaVoteEnv", "CuMaVoteEnvConfig"]
