"""gempo: generalized reweighted flow matching (GeMPO) for online fine-tuning of
flow/diffusion policies, on continuous (actions) and discrete (masked diffusion) spaces."""

from gempo.errors import GempoError
from gempo.losses import GeMPOObjective, GeMPOStep, ReweightedLoss
from gempo.module import ContextStream, DataReplay, GeMPOModule
from gempo.paths import LinearPath, MaskedPath
from gempo.policies import ContinuousFlowPolicy, GenerativePolicy, MaskedDiffusionPolicy, PolicyLoss
from gempo.samplers import euler_sample, masked_ancestral_sample, masked_nelbo
from gempo.weights import WEIGHT_FUNCTIONS, WeightFunction, build_weight, normalize_rewards

__all__ = [
    "WEIGHT_FUNCTIONS",
    "ContextStream",
    "ContinuousFlowPolicy",
    "DataReplay",
    "GeMPOModule",
    "GeMPOObjective",
    "GeMPOStep",
    "GempoError",
    "GenerativePolicy",
    "LinearPath",
    "MaskedDiffusionPolicy",
    "MaskedPath",
    "PolicyLoss",
    "ReweightedLoss",
    "WeightFunction",
    "build_weight",
    "euler_sample",
    "masked_ancestral_sample",
    "masked_nelbo",
    "normalize_rewards",
]
