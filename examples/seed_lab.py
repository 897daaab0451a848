"""The R course's seed lab, line for line in luz style: Design, an nn.Module, setup / set_hparams / fit / predict."""

import torch
from torch import nn
import nnfit as nf

penguins = nf.datasets.load("penguins")            # bundled, offline; 344 rows; factors are pandas Categorical
penguins = penguins.dropna().drop(columns="year")   # R: drop_na() |> select(-year)
training, testing = nf.split(penguins, prop=0.8, seed=1)   # R: slice_sample(prop=.8); anti_join
                                                    # also strata="species"; split keeps row order within each part

design = nf.Design("body_mass_g ~ . - 1", scale=True).fit(training)   # R: model.matrix() |> scale()
Xtraining, Ytraining = design.tensors(training)     # float32 X (n, p); Y float32 (n, 1) for a numeric response
Xtesting, Ytesting = design.tensors(testing)        # SAME encoding and the TRAINING mean/sd (no leakage)
design.columns   # ['speciesAdelie', 'speciesChinstrap', 'speciesGentoo', 'islandDream',
                 #  'islandTorgersen', 'bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'sexmale']
                 # (R's model.matrix names and order)

class ModNN(nn.Module):                             # R: nn_module(initialize=, forward=)
    def __init__(self, input_size):
        super().__init__()
        self.hidden = nn.Linear(input_size, 50)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(0.4)
        self.output = nn.Linear(50, 1)

    def forward(self, x):
        return self.output(self.dropout(self.activation(self.hidden(x))))

fitted = (
    nf.setup(ModNN, loss=nn.MSELoss(), optimizer=torch.optim.RMSprop,
             metrics=[nf.metrics.MAE()])
    .set_hparams(input_size=Xtraining.shape[1])
    .set_opt_hparams(lr=0.01)                       # optional
    .fit((Xtraining, Ytraining), epochs=100)        # batch_size=32, shuffled, like luz
)
npred = fitted.predict(Xtesting)                    # tensor (n, 1), eval mode, no grad
result = fitted.evaluate((Xtesting, Ytesting))      # result.metrics == {'loss': ..., 'mae': ...}
fitted.metrics                                      # long DataFrame: set, metric, epoch, value
fitted.plot()                                       # learning curves, matplotlib Figure
nf.plot.truth_vs_predicted(Ytesting, npred)         # the R lab's scatter, with the y = x line
print("body mass: test MAE", round(result.metrics["mae"], 1), "g (the R lab: 422.8 g)")

# Classification (the R lab's second part).
design = nf.Design("species ~ . - 1", scale=True).fit(training)
Xtraining, Ytraining = design.tensors(training)     # Y: int64 class codes (n,)
Xtesting, Ytesting = design.tensors(testing)
assert design.levels == ["Adelie", "Chinstrap", "Gentoo"]


class ModelNN2(nn.Module):
    def __init__(self, input_size):
        super().__init__()
        self.hidden1 = nn.Linear(input_size, 10)
        self.hidden2 = nn.Linear(10, 5)
        self.output = nn.Linear(5, 3)
        self.drop1 = nn.Dropout(0.4)
        self.drop2 = nn.Dropout(0.3)
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.drop1(self.activation(self.hidden1(x)))
        x = self.drop2(self.activation(self.hidden2(x)))
        return self.output(x)


fitted2 = (
    nf.setup(ModelNN2, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.RMSprop,
             metrics=[nf.metrics.Accuracy()])
    .set_hparams(input_size=Xtraining.shape[1])
    .fit((Xtraining, Ytraining), epochs=100)
)
codes = fitted2.predict(Xtesting).argmax(dim=1)
labels = design.decode(codes)
print("species: test accuracy", round(float((codes == Ytesting).float().mean()), 3), "(the R lab: 1)")
