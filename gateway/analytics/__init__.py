"""Payment analytics (design.md 5.9): the rollups the stores keep, the reports built on them."""
