# tests/r/linear_models.R -- the R oracle for nnfit's hidden=[] coefficients (issue 15).
#
# Writes tests/fixtures/r_linear_models.json: for each model, what R's lm(), glm(binomial)
# or nnet::multinom() give (coefficient names, estimates, standard errors, and the
# summary's fit statistics).  tests/test_summaries.py reads it; CI never needs R.
#
# How to run (from the repository root; R >= 4.2, base stats plus nnet for multinom):
#
#   Rscript tests/r/linear_models.R [OUTPUT_JSON]
#
#   OUTPUT_JSON    default: tests/fixtures/r_linear_models.json
#
# Data are nnfit's bundled copies, read exactly as nnfit's loader and tests/r/formulas.R
# read them:
#   Sys.setlocale("LC_COLLATE", "C")   (factor levels sorted by code point)
#   read.csv(path, stringsAsFactors = TRUE, na.strings = c("NA", ""), check.names = FALSE)
# penguins: src/nnfit/data/penguins.csv (identical to palmerpenguins::penguins, with its NAs;
# checked below when palmerpenguins is installed); Default: src/nnfit/data/Default.csv.gz
# (ISLR's, the ISLP wheel's CSV).  Rows with a missing value are left out (na.omit), as lm does.
#
# The JSON writer is tests/r/formulas.R's: its definitions (arr, obj, json_str, json_num,
# json_atoms, to_json) are read from that file, so the two fixtures are written one way.

invisible(Sys.setlocale("LC_COLLATE", "C"))
Sys.setenv(LANGUAGE = "en")
options(warn = 1, scipen = 0, digits = 7, OutDec = ".")

args <- commandArgs(trailingOnly = TRUE)
out_path <- if (length(args) >= 1L && nzchar(args[[1L]])) args[[1L]] else file.path("tests", "fixtures", "r_linear_models.json")
data_dir <- file.path("src", "nnfit", "data")
if (!dir.exists(data_dir)) stop("run from the repository root (", data_dir, " not found)")

writer <- c("arr", "obj", "json_str", "json_num", "json_atoms", "to_json")
for (e in parse(file.path("tests", "r", "formulas.R"))) {
  if (is.call(e) && identical(e[[1L]], as.name("<-")) && is.name(e[[2L]]) && as.character(e[[2L]]) %in% writer)
    eval(e, globalenv())
}
missing_writer <- writer[!vapply(writer, exists, NA)]
if (length(missing_writer)) stop("tests/r/formulas.R no longer defines ", paste(missing_writer, collapse = ", "))

read_nnfit <- function(path) read.csv(path, stringsAsFactors = TRUE, na.strings = c("NA", ""), check.names = FALSE)
DATA <- list(penguins = read_nnfit(file.path(data_dir, "penguins.csv")),
             Default = read_nnfit(file.path(data_dir, "Default.csv.gz")))
penguins_check <- "palmerpenguins not installed"
if (requireNamespace("palmerpenguins", quietly = TRUE)) {
  pp <- as.data.frame(palmerpenguins::penguins)
  same <- identical(names(pp), names(DATA$penguins)) &&
    all(vapply(names(pp), function(v) identical(pp[[v]], DATA$penguins[[v]]), NA))
  penguins_check <- if (same) "identical to palmerpenguins::penguins" else "DIFFERS from palmerpenguins::penguins"
}

# ---------------------------------------------------------------------------
# One model.  Estimates and standard errors are row-major for multinom: one row per
# level after the first (the reference), one column per coefficient name.
model_of <- function(id, kind, data, formula) {
  f <- eval(str2lang(formula), globalenv())
  d <- DATA[[data]]
  out <- list(id = id, kind = kind, data = data, formula = formula)
  if (kind == "lm") {
    fit <- lm(f, data = d)
    s <- summary(fit)
    table <- coef(s)
    out <- c(out, list(call = "lm(formula, data)", n = nobs(fit), n_left_out = length(fit$na.action),
                       names = arr(rownames(table)), estimates = arr(unname(table[, "Estimate"])),
                       std_errors = arr(unname(table[, "Std. Error"])), t_values = arr(unname(table[, "t value"])),
                       sigma = s$sigma, df_residual = fit$df.residual, r_squared = s$r.squared,
                       adj_r_squared = s$adj.r.squared))
  } else if (kind == "glm") {
    fit <- glm(f, data = d, family = binomial, control = glm.control(epsilon = 1e-14, maxit = 100))
    s <- summary(fit)
    table <- coef(s)
    out <- c(out, list(call = "glm(formula, family = binomial, data, control = glm.control(epsilon = 1e-14, maxit = 100))",
                       n = nobs(fit), n_left_out = length(fit$na.action), levels = arr(levels(model.response(model.frame(fit)))),
                       names = arr(rownames(table)), estimates = arr(unname(table[, "Estimate"])),
                       std_errors = arr(unname(table[, "Std. Error"])), z_values = arr(unname(table[, "z value"])),
                       deviance = fit$deviance, null_deviance = fit$null.deviance, aic = fit$aic,
                       df_residual = fit$df.residual, iterations = fit$iter, converged = fit$converged))
  } else if (kind == "multinom") {
    fit <- nnet::multinom(f, data = d, trace = FALSE, Hess = TRUE, reltol = 1e-14, abstol = 1e-14, maxit = 5000)
    s <- summary(fit)
    est <- s$coefficients; se <- s$standard.errors
    # summary.multinom inverts the Hessian with a generalized inverse (vcov.multinom's ginv) that
    # drops singular values below sqrt(.Machine$double.eps) times the largest; with predictors in
    # millimetres this Hessian's condition number is about 2e8, so one direction is dropped and
    # some standard errors shrink (Gentoo's intercept: 1.58 instead of 23.5).  solve() keeps it.
    se_solve <- matrix(sqrt(diag(solve(fit$Hessian))), nrow = nrow(est), byrow = TRUE)
    out <- c(out, list(call = "nnet::multinom(formula, data, Hess = TRUE, reltol = 1e-14, abstol = 1e-14, maxit = 5000)",
                       n = nrow(fit$fitted.values), n_left_out = length(fit$na.action), levels = arr(fit$lev),
                       names = arr(colnames(est)), rows = arr(rownames(est)),
                       estimates = lapply(seq_len(nrow(est)), function(i) arr(unname(est[i, ]))),
                       std_errors = lapply(seq_len(nrow(se)), function(i) arr(unname(se[i, ]))),
                       std_errors_solve = lapply(seq_len(nrow(se_solve)), function(i) arr(unname(se_solve[i, ]))),
                       hessian_condition = kappa(fit$Hessian, exact = TRUE),
                       deviance = fit$deviance, aic = fit$AIC, converged = fit$convergence == 0L,
                       nnet_version = as.character(utils::packageVersion("nnet"))))
  } else stop("unknown kind ", kind)
  message(sprintf("%-24s %-8s n=%-5d %s", id, kind, out$n, paste(sprintf("%s=%.6g", unclass(out$names), if (is.list(out$estimates)) unclass(out$estimates[[1L]]) else unclass(out$estimates)), collapse = " ")))
  out
}

M <- function(id, kind, data, formula) list(id = id, kind = kind, data = data, formula = formula)
models <- list(
  M("penguins_lm", "lm", "penguins", "body_mass_g ~ . - year"),
  M("default_glm", "glm", "Default", "default ~ ."),
  M("default_balance_glm", "glm", "Default", "default ~ balance"),
  M("penguins_multinom", "multinom", "penguins", "species ~ bill_length_mm + flipper_length_mm")
)
results <- lapply(models, function(m) model_of(m$id, m$kind, m$data, m$formula))

doc <- paste(
  "Expected coefficient tables from R for nnfit's hidden=[] networks.  lm: coef(summary(lm(formula, data))),",
  "with sigma, r.squared and adj.r.squared of summary() and the residual degrees of freedom.",
  "glm: coef(summary(glm(formula, family = binomial, data))), converged tightly (epsilon 1e-14); the response's",
  "levels (the coefficients are the log-odds of the second), deviance, null deviance, AIC.",
  "multinom: nnet::multinom's coefficients and standard errors (from its analytic Hessian, summary.multinom),",
  "relative to the first level: estimates[i][j] is row rows[i] (a level), column names[j].",
  "std_errors_solve: sqrt(diag(solve(fit$Hessian))), the same analytic Hessian inverted exactly; summary.multinom's",
  "std_errors come from a generalized inverse (vcov.multinom) that drops directions with singular values below",
  "sqrt(.Machine$double.eps) times the largest, which an ill-conditioned Hessian (hessian_condition, the 2-norm",
  "condition number) loses.",
  "n = rows used; n_left_out = rows left out for a missing value (na.omit).",
  "Numbers: doubles written with the fewest of 15/16/17 significant digits that read back identically.")

fixture <- list(
  r_version = R.version.string,
  made_by = "tests/r/linear_models.R",
  doc = doc,
  read_doc = paste("Sys.setlocale('LC_COLLATE', 'C'); read.csv(path, stringsAsFactors = TRUE, na.strings = c('NA', ''),",
                   "check.names = FALSE) for src/nnfit/data/penguins.csv and src/nnfit/data/Default.csv.gz."),
  penguins_check = penguins_check,
  models = results
)

dir.create(dirname(out_path), showWarnings = FALSE, recursive = TRUE)
con <- file(out_path, open = "w", encoding = "UTF-8")
writeLines(to_json(fixture), con, useBytes = TRUE)
close(con)
message(sprintf("wrote %s: %d models", out_path, length(results)))
