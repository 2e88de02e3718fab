"""omniport's core: spec, discovery, checks, machine-config engine, plan, apply, rollback."""

__version__ = "0.1.0"
