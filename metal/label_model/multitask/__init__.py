"""The multi-task label model, split by concern.

* :mod:`.votes`: validation of multi-task input and scoring of label vectors;
* :mod:`.coding`: each source's whole vote vector as one code;
* :mod:`.likelihood`: the EM estimator over the feasible set (default);
* :mod:`.moments`: the second-moment (matrix completion) estimator;
* :mod:`.model`: :class:`MultiTaskLabelModel`, the estimator users call.
"""

from metal.label_model.multitask.coding import (
    MAX_SOURCE_CODES,
    MultiTaskCoding,
    agreement_projection,
    complete_votes,
    coverage_projection,
    vote_agreement,
)
from metal.label_model.multitask.model import ESTIMATORS, MultiTaskLabelModel
from metal.label_model.multitask.moments import TIES
from metal.label_model.multitask.votes import (
    MultiTaskChunk,
    MultiTaskVotes,
    _check_task_graph,
    check_multitask_votes,
    joint_balance_from_gold,
    score_label_vectors,
)

__all__ = ["ESTIMATORS", "MAX_SOURCE_CODES", "TIES", "MultiTaskChunk", "MultiTaskCoding",
           "MultiTaskLabelModel", "MultiTaskVotes", "_check_task_graph", "agreement_projection",
           "check_multitask_votes", "complete_votes", "coverage_projection",
           "joint_balance_from_gold", "score_label_vectors", "vote_agreement"]
