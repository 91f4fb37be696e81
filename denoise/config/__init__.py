"""The experiment config: typed sections (schema), strict loading (load) and the rules a type cannot say (checks).

This package is the project's foundation with ``denoise.atomic``: it imports nothing else from ``denoise``.
"""

from denoise.config.checks import validate_config
from denoise.config.cli import CliParser, HelpFormatter, add_infer_options, infer_flags, run_cli
from denoise.config.load import config_from_dict, dump_config, from_dict, load_config, to_dict
from denoise.config.schema import Config, ConfigError, DataConfig, InferConfig, ModelConfig, TrainConfig

__all__ = [
    "CliParser",
    "Config",
    "ConfigError",
    "DataConfig",
    "HelpFormatter",
    "InferConfig",
    "ModelConfig",
    "TrainConfig",
    "add_infer_options",
    "config_from_dict",
    "dump_config",
    "from_dict",
    "infer_flags",
    "load_config",
    "run_cli",
    "to_dict",
    "validate_config",
]
