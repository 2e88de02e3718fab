"""``python -m omniport.planner.cli``: the same as the ``omniport`` console script."""

from omniport.planner.cli import main

if __name__ == "__main__":
    main()
