"""The formula one-liner: nf.mlp on the penguins, with R's formula, predictions in grams and the classifier."""

import nnfit as nf

raw = nf.datasets.load("penguins")                  # with its missing values and `year`
training, testing = nf.split(raw, prop=0.8, seed=1)
fit = nf.mlp("body_mass_g ~ . - year", data=training, hidden=50, activation="relu",
             dropout=0.4, optimizer="rmsprop", epochs=100, seed=1)
fit.predict(testing)          # pandas Series, original units (grams), index of `testing`;
                              # rows with a missing predictor give NaN, never vanish
                              # (rows with missing values were left out of training, and said so)
fit.evaluate(testing)         # dict: mae, rmse, r2 for regression (original units), on the rows
                              # it can score; how many it left out is reported
print(fit)                    # formula, the network in the course's notation, parameter count, metrics
fit.coef()                    # weights named in the course's notation (w^(1)_kj, beta_tm)
fit.plot()                    # learning curves

cls = nf.mlp("species ~ . - year", data=training, hidden=[10, 5], dropout=[0.4, 0.3], epochs=100)
cls.predict(testing)                  # pandas Categorical of labels
cls.predict(testing, type="prob")     # DataFrame, one column per level
cls.evaluate(testing)                 # dict: accuracy, log_loss, ...
fit.save("mass.nnfit"); same = nf.load("mass.nnfit")   # safe format: loading runs no code

print(fit.evaluate(testing))
print(cls.evaluate(testing))
