"""Names of the search's choices, importable without torch (the CLI's help lists them)."""

STRATEGIES = ("prune", "random")
SCORE_NAMES = ("sahd", "naswot")
BN_MODES = ("batch", "identity")
