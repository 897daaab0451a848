"""Training: tensors, modules and the one loop that trains them (luz's workflow).

``loop.run`` is the only epoch loop; ``hooks`` and ``callbacks`` hold what runs around it;
``monitor`` is the one "which epoch is best" base; ``checkpoints`` and ``divergence`` keep a fit
safe; ``closed_form``, ``fused``, ``many`` and ``ensemble`` are the steps that train nnfit's own
networks (one or K at once) without autograd; ``learner`` is luz's ``setup -> fit``. This room
works on tensors, Datasets and modules only, never on formulas or data frames.
"""
