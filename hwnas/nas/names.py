"""Names of the search's choices, importable without torch (the CLI's help lists them)."""

STRATEGIES = ("prune", "random", "evolution")
SCORE_NAMES = ("sahd", "naswot")
BN_MODES = ("batch", "identity")
# --deployable: any = every cell the simulators run; netx = only what lava-dl's netx format holds (chains of
# convolution and dense layers: average-pool downsampling folded into strided convolutions, no feedback)
DEPLOYABLES = ("any", "netx")

# Default --refine of the command line (README, "Does the signal rank architectures?"; bench/winner_quartile.py).
# Measured with `hwnas proxy-check` on digits (40 random cells, 4 epochs x 2 seeds): SAHD ranks trained accuracy
# at Kendall tau 0.14 [-0.05, 0.32], one epoch of training at 0.44 [0.27, 0.61] (seed ceiling 0.52), so short
# training is the signal that chooses; 8 candidates through successive halving cost about 80 s on 2 cores.
DEFAULT_REFINE = 8
# Default --refine-energy-weight: validation-accuracy points one doubling of energy costs in the refined fitness.
# Replaying selection on the 40 proxy-check cells (1-epoch accuracy, random pools of 16): weight 1 kept the
# winner's mean accuracy percentile at 86 (87 at weight 0), weight 4 pulled it to 76 for 0.75x the energy.
DEFAULT_REFINE_ENERGY_WEIGHT = 1.0
# Default --screen: candidates of highest fitness (all of a prune search's pool: its winner and the 24 random cells
# it adds) trained --screen-fraction of an epoch each, to choose the --refine that successive halving trains (with
# --refine-epochs 1 a whole epoch is the first rung's training, so it costs the 17 extra candidates' epochs). Why:
# the zero-cost score that chose them does not rank trained accuracy. Measured with `hwnas proxy-check` and
# bench/screen_fraction.py (README, "What the search's pipeline keeps"), Kendall tau against the accuracy after 4
# (digits, 40 cells) or 3 (N-MNIST-format saccades, 16 cells) epochs x 2 seeds: a quarter of an epoch 0.11 on
# digits and 0.05 on events, half an epoch 0.25 [-0.01, 0.48] and 0.36, a whole epoch 0.46 and 0.43.
DEFAULT_SCREEN = 25
DEFAULT_SCREEN_FRACTION = 1.0
# AutoSNN's default weight of the spike term (Na et al., ICML 2022: lambda = -0.08 in F = Acc x (N/N_avg)^lambda)
DEFAULT_SPIKE_LAMBDA = -0.08
