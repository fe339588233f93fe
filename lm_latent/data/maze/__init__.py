"""The Keys-Finding Maze task: the world and its rules, A* with its trace, random layouts, plans and
their checker, and a symbolic tokenizer (one token per keyword, number, cost and colour).

The data generator is ``lm_latent.data.generators.maze`` (``lm-latent data generate maze``); the
evaluation callback (1-Feasible-10) is ``lm_latent.evaluation.maze``.
"""

from lm_latent.data.maze.plans import PlanCheck, check_plan, parse_plan, plan_text
from lm_latent.data.maze.search import astar, shortest_plan_length
from lm_latent.data.maze.world import COLOURS, Maze, PromptError, parse_prompt

__all__ = [
    "COLOURS", "Maze", "PlanCheck", "PromptError", "astar", "check_plan", "parse_plan", "parse_prompt",
    "plan_text", "shortest_plan_length",
]
