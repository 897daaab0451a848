# tests/r/formulas.R -- the R oracle for nnfit's formula layer (issue 10).
#
# Writes tests/fixtures/r_formulas.json: for each formula, what R's own
# model.frame()/model.matrix() give (column names, assign, rows kept, values,
# response, warnings or error, offset, and safe-prediction on new data).
# The Python tests read that JSON; CI never needs R.
#
# How to run (from the repository root; R >= 4.2, base packages plus
# palmerpenguins for the cross-check of nnfit's penguins.csv):
#
#   Rscript tests/r/formulas.R [ISLP_DATA_DIR] [OUTPUT_JSON]
#
#   ISLP_DATA_DIR  folder holding the ISLR CSVs from the ISLP wheel
#                  (`pip download --no-deps ISLP`, unzip, ISLP/data/; BSD licence).
#                  Default: /tmp/islp/wheel/ISLP/data.  nnfit's own gzipped copies
#                  work too (same bytes): Rscript tests/r/formulas.R src/nnfit/data
#   OUTPUT_JSON    default: tests/fixtures/r_formulas.json
#
# Data are read exactly as nnfit's loader reads them:
#   Sys.setlocale("LC_COLLATE", "C")   (factor levels sorted by code point)
#   read.csv(path, stringsAsFactors = TRUE, na.strings = c("NA", ""), check.names = FALSE)
# penguins: nnfit's own src/nnfit/data/penguins.csv (checked against
# palmerpenguins::penguins when that package is installed); iris: datasets::iris.
#
# No R package beyond base R (stats, splines, utils, tools) is needed to write
# the fixture; the JSON writer is below (no jsonlite).

invisible(Sys.setlocale("LC_COLLATE", "C"))
Sys.setenv(LANGUAGE = "en")   # R's messages in English
options(useFancyQuotes = FALSE)  # and with plain quotes ('|', not the curly quotes of a UTF-8 session)
suppressPackageStartupMessages(library(splines))
options(warn = 1, scipen = 0, digits = 7, OutDec = ".")

args <- commandArgs(trailingOnly = TRUE)
islp_dir <- if (length(args) >= 1L && nzchar(args[[1L]])) args[[1L]] else "/tmp/islp/wheel/ISLP/data"
out_path <- if (length(args) >= 2L && nzchar(args[[2L]])) args[[2L]] else file.path("tests", "fixtures", "r_formulas.json")
penguins_csv <- file.path("src", "nnfit", "data", "penguins.csv")
if (!file.exists(penguins_csv)) stop("run from the repository root (", penguins_csv, " not found)")
if (!dir.exists(islp_dir)) stop("ISLP data folder not found: ", islp_dir)

# ---------------------------------------------------------------------------
# Functions that are not base R.  dplyr::lag: the first n values become NA.
lag <- function(x, n = 1L) c(rep(NA, n), head(x, -n))
functions_doc <- paste(
  "All functions are R's own (base, stats, splines; library(splines) is attached),",
  "except lag, which follows dplyr::lag and is defined in the script as",
  "lag <- function(x, n = 1L) c(rep(NA, n), head(x, -n)): the first n values are NA",
  "(and so those rows are left out by na.omit).  Formulas are evaluated in the",
  "global environment, where that lag masks stats::lag.")

# ---------------------------------------------------------------------------
# A small JSON writer.
#   NULL -> null; NA -> null; NaN -> "NaN"; Inf -> "Inf"; -Inf -> "-Inf".
#   Doubles are written with the fewest of 15/16/17 significant digits that
#   read back to the identical double.  Integers as integers.  Logicals true/false.
#   Atomic vectors of length 1 are scalars unless wrapped in arr(); longer ones arrays.
#   Named lists are objects, unnamed lists arrays; obj() is an empty object.
arr <- function(x) { if (is.null(x)) x <- logical(0); class(x) <- c("json_array", setdiff(class(x), "json_array")); x }
obj <- function(...) { x <- list(...); if (length(x) == 0L) x <- structure(list(), names = character(0)); class(x) <- "json_object"; x }

json_str <- function(s) {
  s <- enc2utf8(as.character(s))
  s <- gsub("\\", "\\\\", s, fixed = TRUE)
  s <- gsub("\"", "\\\"", s, fixed = TRUE)
  s <- gsub("\n", "\\n", s, fixed = TRUE)
  s <- gsub("\r", "\\r", s, fixed = TRUE)
  s <- gsub("\t", "\\t", s, fixed = TRUE)
  ctrl <- gregexpr("[\001-\037]", s)
  for (i in seq_along(s)) {
    if (ctrl[[i]][1L] > 0L) {
      chars <- strsplit(s[i], "")[[1L]]
      cc <- utf8ToInt(paste(chars, collapse = ""))
      s[i] <- paste(ifelse(cc < 32L, sprintf("\\u%04x", cc), vapply(cc, intToUtf8, "")), collapse = "")
    }
  }
  paste0("\"", s, "\"")
}

json_num <- function(x) {
  out <- character(length(x))
  if (is.integer(x)) {
    ok <- !is.na(x)
    out[ok] <- as.character(x[ok])
    out[!ok] <- "null"
    return(out)
  }
  x <- as.double(x)
  fin <- is.finite(x)
  v <- x[fin]
  s <- sprintf("%.15g", v)
  bad <- as.numeric(s) != v
  s[bad] <- sprintf("%.16g", v[bad])
  bad <- as.numeric(s) != v
  s[bad] <- sprintf("%.17g", v[bad])
  out[fin] <- s
  out[is.na(x) & !is.nan(x)] <- "null"
  out[is.nan(x)] <- "\"NaN\""
  out[!is.na(x) & x == Inf] <- "\"Inf\""
  out[!is.na(x) & x == -Inf] <- "\"-Inf\""
  out
}

json_atoms <- function(x) {
  if (is.factor(x)) x <- as.character(x)
  if (is.logical(x)) return(ifelse(is.na(x), "null", ifelse(x, "true", "false")))
  if (is.numeric(x)) return(json_num(x))
  if (is.character(x)) return(ifelse(is.na(x), "null", json_str(x)))
  stop("cannot write ", class(x)[1L], " as JSON")
}

to_json <- function(x, ind = "") {
  inner <- paste0(ind, "  ")
  if (is.null(x)) return("null")
  if (is.list(x)) {
    nm <- names(x)
    if (inherits(x, "json_object") || !is.null(nm)) {
      if (length(x) == 0L) return("{}")
      parts <- vapply(seq_along(x), function(i) paste0(inner, json_str(nm[i]), ": ", to_json(x[[i]], inner)), "")
      return(paste0("{\n", paste(parts, collapse = ",\n"), "\n", ind, "}"))
    }
    if (length(x) == 0L) return("[]")
    parts <- vapply(x, to_json, "", ind = inner)
    return(paste0("[\n", paste0(inner, parts, collapse = ",\n"), "\n", ind, "]"))
  }
  a <- json_atoms(unclass(x))
  if (length(x) == 1L && !inherits(x, "json_array")) return(a)
  paste0("[", paste(a, collapse = ", "), "]")
}

# ---------------------------------------------------------------------------
# Data.
read_nnfit <- function(path) read.csv(path, stringsAsFactors = TRUE, na.strings = c("NA", ""), check.names = FALSE)

islr_names <- c("College", "Boston", "Carseats", "Auto", "Wage", "Hitters", "Default", "Credit")
DATA <- list()
data_doc <- list()
csv_md5 <- function(p) {
  if (!grepl("[.]gz$", p)) return(unname(tools::md5sum(p)))
  tmp <- tempfile(fileext = ".csv")
  on.exit(unlink(tmp))
  con <- gzfile(p, "rb"); bytes <- readBin(con, "raw", n = 1e9); close(con)
  writeBin(bytes, tmp)
  unname(tools::md5sum(tmp))
}
for (nm in islr_names) {
  p <- file.path(islp_dir, paste0(nm, ".csv"))
  if (!file.exists(p) && file.exists(paste0(p, ".gz"))) p <- paste0(p, ".gz")  # nnfit's bundled copy
  DATA[[nm]] <- read_nnfit(p)
  data_doc[[nm]] <- list(source = paste0("ISLP wheel (0.6.0), ISLP/data/", nm, ".csv; nnfit bundles the same bytes as src/nnfit/data/", nm, ".csv.gz"),
                         md5 = csv_md5(p))
}
DATA$penguins <- read_nnfit(penguins_csv)
data_doc$penguins <- list(source = "nnfit src/nnfit/data/penguins.csv",
                          md5 = unname(tools::md5sum(penguins_csv)))
DATA$iris <- datasets::iris
data_doc$iris <- list(source = "R datasets::iris")

# Cross-check nnfit's penguins against palmerpenguins.
penguins_check <- "palmerpenguins not installed"
if (requireNamespace("palmerpenguins", quietly = TRUE)) {
  pp <- as.data.frame(palmerpenguins::penguins)
  ours <- DATA$penguins
  same_names <- identical(names(pp), names(ours))
  same_levels <- all(vapply(names(pp), function(v) identical(levels(pp[[v]]), levels(ours[[v]])), NA))
  same_values <- all(vapply(names(pp), function(v) identical(pp[[v]], ours[[v]]), NA))
  penguins_check <- if (same_names && same_levels && same_values)
    "identical to palmerpenguins::penguins (names, column types, factor levels, values, NAs)"
  else sprintf("DIFFERS from palmerpenguins::penguins: names %s, levels %s, values %s", same_names, same_levels, same_values)
  data_doc$penguins$palmerpenguins_version <- as.character(utils::packageVersion("palmerpenguins"))
}
data_doc$penguins$check <- penguins_check

describe_data <- function(d) {
  lv <- list()
  for (v in names(d)) if (is.factor(d[[v]])) lv[[v]] <- arr(levels(d[[v]]))
  list(nrow = nrow(d), columns = arr(names(d)),
       types = arr(vapply(d, function(col) if (is.ordered(col)) "ordered" else if (is.factor(col)) "factor" else typeof(col), "")),
       levels = if (length(lv)) lv else obj())
}

# Derived frames, described as plain data so that Python can build them identically.
FRAMES <- list(
  penguins_island_ordered = list(from = "penguins", ordered = list(island = arr(c("Torgersen", "Biscoe", "Dream")))),
  penguins_grade = list(from = "penguins", grade = TRUE),
  penguins_male = list(from = "penguins", logical = list(male = arr(c("sex", "male")))),
  penguins_spaced = list(from = "penguins", rename = list(bill_length_mm = "bill length (mm)",
                                                          bill_depth_mm = "bill depth (mm)",
                                                          body_mass_g = "body mass/g")),
  penguins_complete = list(from = "penguins", complete_cases = TRUE)
)
frames_doc <- paste(
  "Each frame is built from its base data ('from') by these steps, in this order:",
  "'rename' {old: new}: rename columns (names() <- ...), keeping their position;",
  "'complete_cases': true: keep only the rows without any NA (d[complete.cases(d), ]), renumbered 0..n-1;",
  "'ordered' {column: [levels...]}: factor(x, levels = levels, ordered = TRUE) (contr.poly coding);",
  "'logical' {new_column: [source_column, value]}: new logical column, appended at the end,",
  "TRUE where as.character(source) == value, FALSE otherwise, NA where source is NA;",
  "'grade': true: appends an ordered factor column 'grade' with levels a<b<c<d<e,",
  "value letters[((row - 1) %% 5) + 1] for 1-based row number row (row 1 = 'a', row 6 = 'a').",
  "Row order and row count are those of the base data.")

make_frame <- function(spec) {
  d <- DATA[[spec$from]]
  if (!is.null(spec$rename)) for (old in names(spec$rename)) names(d)[names(d) == old] <- spec$rename[[old]]
  if (isTRUE(spec$complete_cases)) { d <- d[complete.cases(d), , drop = FALSE]; rownames(d) <- NULL }
  if (!is.null(spec$ordered)) for (v in names(spec$ordered)) d[[v]] <- factor(as.character(d[[v]]), levels = unclass(spec$ordered[[v]]), ordered = TRUE)
  if (!is.null(spec$logical)) for (v in names(spec$logical)) {
    src <- unclass(spec$logical[[v]])
    d[[v]] <- as.character(d[[src[1L]]]) == src[2L]
  }
  if (isTRUE(spec$grade)) d$grade <- factor(letters[((seq_len(nrow(d)) - 1L) %% 5L) + 1L], levels = letters[1:5], ordered = TRUE)
  d
}
for (nm in names(FRAMES)) DATA[[nm]] <- make_frame(FRAMES[[nm]])

# ---------------------------------------------------------------------------
# One case.
NHEAD <- 60L

rows_of <- function(mf) as.integer(rownames(mf)) - 1L

mat_block <- function(mm) {
  n <- nrow(mm)
  h <- min(n, NHEAD)
  head_rows <- lapply(seq_len(h), function(i) arr(unname(as.double(mm[i, ]))))
  out <- list(x_head = head_rows,
              x_sum = arr(unname(colSums(mm))),
              x_sumsq = arr(unname(colSums(mm^2))))
  rn <- as.integer(rownames(mm)) - 1L
  nf <- list()
  for (j in seq_len(ncol(mm))) {
    bad <- which(!is.finite(mm[, j]))
    if (length(bad)) nf[[length(nf) + 1L]] <- list(column = colnames(mm)[j], count = length(bad),
                                                   first_position = bad[1L] - 1L, first_row = rn[bad[1L]],
                                                   first_value = mm[bad[1L], j])
  }
  if (length(nf)) out$x_nonfinite <- nf
  out
}

response_of <- function(mf) {
  y <- model.response(mf)
  if (is.null(y)) return(NULL)
  if (is.factor(y)) return(list(type = if (is.ordered(y)) "ordered" else "factor", levels = arr(levels(y)), codes = arr(as.integer(y) - 1L)))
  if (is.matrix(y)) return(list(type = "matrix", colnames = arr(colnames(y)), ncol = ncol(y), values = arr(as.vector(t(unname(y))))))
  if (is.logical(y)) return(list(type = "logical", values = arr(unname(y))))
  if (is.character(y)) return(list(type = "character", values = arr(unname(y))))
  y <- unname(as.vector(y))
  r <- list(type = "numeric", values = arr(as.double(y)))
  bad <- which(!is.finite(y))
  if (length(bad)) r$nonfinite <- list(count = length(bad), first_position = bad[1L] - 1L,
                                       first_row = rows_of(mf)[bad[1L]], first_value = y[bad[1L]])
  r
}

terms_of <- function(mt) {
  fac <- attr(mt, "factors")
  fl <- if (length(fac)) list(variables = arr(rownames(fac)), terms = arr(colnames(fac)),
                              values = lapply(seq_len(nrow(fac)), function(i) arr(unname(as.integer(fac[i, ]))))) else NULL
  list(term_labels = arr(attr(mt, "term.labels")),
       order = arr(attr(mt, "order")),
       intercept = attr(mt, "intercept"),
       response = attr(mt, "response"),
       variables = arr(vapply(as.list(attr(mt, "variables"))[-1L], function(e) paste(deparse(e, width.cutoff = 500L), collapse = " "), "")),
       offset = if (is.null(attr(mt, "offset"))) NULL else arr(attr(mt, "offset") - 1L),
       factors = fl)
}

capture <- function(expr) {
  warns <- character()
  val <- withCallingHandlers(tryCatch(list(value = expr, error = NULL),
                                      error = function(e) list(value = NULL, error = conditionMessage(e))),
                             warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  val$warnings <- warns
  val
}

run_case <- function(id, data, formula, newdata = FALSE, note = NULL) {
  d <- DATA[[data]]
  if (is.null(d)) stop("no data ", data)
  stopifnot(.row_names_info(d) < 0L)  # automatic row names 1..n
  res <- list(id = id, data = data, formula = formula)
  if (!is.null(note)) res$note <- note
  stage <- "parse"
  got <- capture({
    f <- eval(str2lang(formula), globalenv())
    res["response_name"] <- list(if (length(f) == 3L) paste(deparse(f[[2L]], width.cutoff = 500L), collapse = " ") else NULL)
    stage <- "model.frame"
    mf <- model.frame(f, data = d, na.action = na.omit)
    stage <- "model.matrix"
    mt <- attr(mf, "terms")
    mm <- model.matrix(mt, mf)
    # NB: lm's way, model.matrix(terms(mf), mf).  model.matrix(f, mf) differs when f has '.' and a
    # transformed response: '.' is then re-expanded against mf's own columns, e.g. `log(body_mass_g)`.
    stage <- "done"
    list(f = f, mf = mf, mt = mt, mm = mm)
  })
  res$warnings <- arr(got$warnings)
  res["error"] <- list(got$error)
  if (!is.null(got$error)) {
    res$error_stage <- stage
    message(sprintf("%-32s ERROR (%s): %s", id, stage, got$error))
    return(res)
  }
  f <- got$value$f; mf <- got$value$mf; mt <- got$value$mt; mm <- got$value$mm
  res$columns <- arr(colnames(mm))
  res$assign <- arr(as.integer(attr(mm, "assign")))
  ctr <- attr(mm, "contrasts")
  res$contrasts <- if (length(ctr)) lapply(ctr, function(z) if (is.character(z)) z else "matrix") else obj()
  res$terms <- terms_of(mt)
  res$n <- nrow(mm)
  res$rows <- arr(rows_of(mf))
  res <- c(res, mat_block(mm))
  res["response"] <- list(response_of(mf))
  off <- model.offset(mf)
  if (!is.null(off)) res$offset <- list(head = arr(head(as.double(off), NHEAD)), sum = sum(off), sumsq = sum(off^2))
  if (newdata) res$newdata <- newdata_of(f, d)
  message(sprintf("%-32s n=%-5d p=%-3d%s%s", id, nrow(mm), ncol(mm),
                  if (length(got$warnings)) paste0(" warnings: ", paste(got$warnings, collapse = " | ")) else "",
                  if (newdata) paste0(" newdata ", if (is.null(res$newdata$error)) paste0("n=", res$newdata$n) else paste0("ERROR ", res$newdata$error)) else ""))
  res
}

newdata_of <- function(f, d) {
  k <- floor(2 * nrow(d) / 3)
  train <- d[seq_len(k), , drop = FALSE]
  test <- d[-seq_len(k), , drop = FALSE]
  out <- list(train_rows = arr(c(0L, as.integer(k))))
  stage <- "train"
  got <- capture({
    mf_train <- model.frame(f, train, na.action = na.omit)
    mm_train <- model.matrix(attr(mf_train, "terms"), mf_train)
    tt <- delete.response(terms(mf_train))
    stage <- "newdata model.frame"
    mf_new <- model.frame(tt, test, xlev = .getXlevels(terms(mf_train), mf_train), na.action = na.omit)
    stage <- "newdata model.matrix"
    mm_new <- model.matrix(tt, mf_new)
    stage <- "done"
    list(mf_train = mf_train, mm_train = mm_train, tt = tt, mf_new = mf_new, mm_new = mm_new)
  })
  out$warnings <- arr(got$warnings)
  out["error"] <- list(got$error)
  if (!is.null(got$error)) { out$error_stage <- stage; return(out) }
  v <- got$value
  out$train <- list(n = nrow(v$mm_train), columns = arr(colnames(v$mm_train)),
                    x_sum = arr(unname(colSums(v$mm_train))), x_sumsq = arr(unname(colSums(v$mm_train^2))),
                    predvars = paste(deparse(attr(v$tt, "predvars"), width.cutoff = 500L), collapse = " "))
  out$columns <- arr(colnames(v$mm_new))
  out$n <- nrow(v$mm_new)
  out$rows <- arr(rows_of(v$mf_new))
  c(out, mat_block(v$mm_new))
}

# ---------------------------------------------------------------------------
# The cases: id, data, formula, newdata (data-dependent transform), note.
C <- function(id, data, formula, newdata = FALSE, note = NULL) list(id = id, data = data, formula = formula, newdata = newdata, note = note)
P <- "penguins"
cases <- list(
  # penguins, with its missing values (2 rows all-NA measurements, 11 NA sex)
  C("pg_dot", P, "body_mass_g ~ ."),
  C("pg_dot_minus_year", P, "body_mass_g ~ . - year"),
  C("pg_dot_minus_sex", P, "body_mass_g ~ . - sex", note = "sex is removed but still in the model frame: its NAs drop rows"),
  C("pg_dot_minus_island_sex", P, "body_mass_g ~ . - island - sex"),
  C("pg_one_sided", P, "~ species + bill_length_mm"),
  C("pg_intercept_only", P, "body_mass_g ~ 1"),
  C("pg_species_colon_sex", P, "body_mass_g ~ species:sex"),
  C("pg_island_colon_sex_species", P, "body_mass_g ~ island:sex + species"),
  C("pg_sex_colon_species_island", P, "body_mass_g ~ sex:species + island"),
  C("pg_species_in_island", P, "body_mass_g ~ species %in% island"),
  C("pg_species_slash_island", P, "body_mass_g ~ species/island"),
  C("pg_three_way_square", P, "body_mass_g ~ (species + island + sex)^2"),
  C("pg_square_minus", P, "body_mass_g ~ (species + island)^2 - species:island"),
  C("pg_species_star_sex", P, "body_mass_g ~ species*sex"),
  C("pg_species_plus_species_sex", P, "body_mass_g ~ species + species:sex"),
  C("pg_three_way_colon", P, "body_mass_g ~ species:island:sex"),
  C("pg_species_star_bill", P, "body_mass_g ~ species * bill_length_mm"),
  C("pg_species_colon_bill", P, "body_mass_g ~ species:bill_length_mm"),
  C("pg_numeric_colon", P, "body_mass_g ~ bill_length_mm:bill_depth_mm"),
  C("pg_zero_plus_species", P, "body_mass_g ~ 0 + species"),
  C("pg_minus_one_species_bill", P, "body_mass_g ~ -1 + species + bill_length_mm"),
  C("pg_species_plus_zero", P, "body_mass_g ~ species + 0"),
  C("pg_species_minus_one_island", P, "body_mass_g ~ species - 1 + island"),
  C("pg_zero_species_colon_sex", P, "body_mass_g ~ 0 + species:sex"),
  C("pg_zero_bill_colon_species", P, "body_mass_g ~ 0 + bill_length_mm:species"),
  C("pg_zero_numeric", P, "body_mass_g ~ 0 + bill_length_mm"),
  C("pg_zero_only", P, "body_mass_g ~ 0", note = "no columns at all"),
  C("pg_minus_one_only", P, "body_mass_g ~ -1"),
  C("pg_explicit_one", P, "body_mass_g ~ 1 + species"),
  C("pg_duplicate_term", P, "body_mass_g ~ species + species + bill_length_mm"),
  C("pg_remove_absent", P, "body_mass_g ~ species - bill_length_mm", note = "a removed variable is still in the model frame, so its NAs drop rows"),
  C("pg_sex_plus_species_colon_sex", P, "body_mass_g ~ sex + species:sex", note = "in sex:species, sex gets indicators of all its levels (the margin species is absent) and species its contrasts (the margin sex is present)"),
  C("pg_species_colon_sex_plus_sex", P, "body_mass_g ~ species:sex + sex"),
  C("pg_colon_numeric_then_margin", P, "body_mass_g ~ bill_length_mm:species + species"),
  C("pg_species_star_island_star_sex", P, "body_mass_g ~ species*island*sex"),
  C("pg_numeric_square", P, "body_mass_g ~ (bill_length_mm + bill_depth_mm + flipper_length_mm)^2"),
  C("pg_log_star_species", P, "body_mass_g ~ log(bill_length_mm) * species"),
  C("pg_factor_year_star_species", P, "body_mass_g ~ factor(year) * species", newdata = TRUE),
  C("pg_I_cubic", P, "body_mass_g ~ bill_length_mm + I(bill_length_mm^2) + I(bill_length_mm^3)"),
  C("pg_I_reciprocal", P, "body_mass_g ~ I(1/bill_length_mm) + I(bill_depth_mm^-1) + exp(-bill_depth_mm/10)"),
  C("pg_deparse_numbers", P, "body_mass_g ~ I(bill_length_mm * 0.00015) + I(bill_length_mm + 1e6) + I(bill_length_mm/1000) + I(bill_length_mm * 0.333333333333333333) + I(bill_length_mm + 1234567) + I(bill_length_mm * 3.14159265358979)"),
  C("pg_nested_calls", P, "body_mass_g ~ log(abs(bill_depth_mm - 17) + 1) + sqrt(abs(bill_length_mm - 44))"),
  C("pg_as_numeric_comparison", P, "body_mass_g ~ as.numeric(sex == \"male\")"),
  C("pg_factor_levels", P, "body_mass_g ~ factor(sex, levels = c(\"male\", \"female\"))", newdata = TRUE),
  C("pg_offset_dot", P, "body_mass_g ~ . + offset(flipper_length_mm)"),
  C("pg_two_offsets", P, "body_mass_g ~ offset(bill_depth_mm) + offset(log(bill_length_mm)) + species"),
  C("pg_offset_no_intercept", P, "body_mass_g ~ offset(flipper_length_mm) - 1 + island"),
  C("pg_scale_no_scale", P, "body_mass_g ~ scale(bill_length_mm, scale = FALSE)", newdata = TRUE),
  C("pg_cut_breaks_number_named", P, "body_mass_g ~ cut(flipper_length_mm, breaks = 4)"),
  C("pg_I_square", P, "body_mass_g ~ I(bill_length_mm^2)"),
  C("pg_I_sex_eq_male", P, "body_mass_g ~ I(sex == \"male\")"),
  C("pg_I_single_quotes", P, "body_mass_g ~ I(species == 'Adelie')", note = "R deparses single quotes as double quotes"),
  C("pg_I_gt", P, "body_mass_g ~ I(bill_length_mm > 45)"),
  C("pg_I_le_ne", P, "body_mass_g ~ I(flipper_length_mm <= 190) + I(bill_depth_mm != 18)"),
  C("pg_I_ge_lt", P, "body_mass_g ~ I(bill_length_mm >= 45) + I(bill_depth_mm < 17)"),
  C("pg_I_arith", P, "body_mass_g ~ I(bill_length_mm * bill_depth_mm) + I((flipper_length_mm - 200)/10) + I(-bill_depth_mm)"),
  C("pg_I_modulo", P, "body_mass_g ~ I(year %% 2) + I(flipper_length_mm %/% 10)"),
  C("pg_I_small_large_numbers", P, "flipper_length_mm ~ I(body_mass_g/1e5) + I(bill_length_mm * 1e-04) + I(bill_depth_mm + 100000) + I(bill_depth_mm * 123456)"),
  C("pg_I_decimals", P, "body_mass_g ~ I(0.5 * bill_length_mm) + I(bill_depth_mm^0.25) + I(bill_length_mm + 1e-10)"),
  C("pg_I_integer_literal", P, "body_mass_g ~ I(bill_length_mm^2L) + I(year - 2007L)"),
  C("pg_factor_year", P, "body_mass_g ~ factor(year)", newdata = TRUE),
  C("pg_as_factor_year", P, "body_mass_g ~ as.factor(year)", newdata = TRUE),
  C("pg_factor_island", P, "body_mass_g ~ factor(island)", newdata = TRUE),
  C("pg_factor_year_colon_sex", P, "body_mass_g ~ factor(year):sex", newdata = TRUE),
  C("pg_I_year_star_species", P, "body_mass_g ~ I(year - 2007) * species"),
  C("pg_log_base2", P, "body_mass_g ~ log(bill_length_mm, 2)"),
  C("pg_log_base_named", P, "body_mass_g ~ log(bill_length_mm, base = 10)"),
  C("pg_log", P, "body_mass_g ~ log(bill_length_mm)"),
  C("pg_log2", P, "body_mass_g ~ log2(bill_length_mm)"),
  C("pg_log10", P, "flipper_length_mm ~ log10(body_mass_g)"),
  C("pg_log1p", P, "body_mass_g ~ log1p(bill_depth_mm)"),
  C("pg_log_nan", P, "body_mass_g ~ log(bill_depth_mm - 15)", note = "log of a negative gives NaN (with a warning); na.omit drops those rows"),
  C("pg_log_zero", P, "body_mass_g ~ log(flipper_length_mm - 172)", note = "log(0) = -Inf is kept in the model matrix"),
  C("pg_exp", P, "body_mass_g ~ exp(bill_depth_mm/10)"),
  C("pg_expm1", P, "body_mass_g ~ expm1(bill_depth_mm/10)"),
  C("pg_sqrt", P, "body_mass_g ~ sqrt(flipper_length_mm)"),
  C("pg_abs", P, "body_mass_g ~ abs(bill_length_mm - 45)"),
  C("pg_sin_cos", P, "body_mass_g ~ sin(bill_length_mm) + cos(bill_length_mm)"),
  C("pg_tanh", P, "body_mass_g ~ tanh(bill_depth_mm - 17)"),
  C("pg_pmin", P, "body_mass_g ~ pmin(bill_length_mm, 45)"),
  C("pg_pmax", P, "body_mass_g ~ pmax(bill_length_mm, 40)"),
  C("pg_pmin_two_columns", P, "body_mass_g ~ pmin(bill_length_mm, bill_depth_mm * 3)"),
  C("pg_round_floor_ceiling", P, "body_mass_g ~ round(bill_length_mm) + floor(bill_depth_mm) + ceiling(bill_depth_mm)"),
  C("pg_round_digits", P, "body_mass_g ~ round(bill_length_mm, 1) + round(bill_depth_mm, digits = -1)"),
  C("pg_round_half", P, "body_mass_g ~ round(bill_length_mm - 0.5)", note = "R rounds halves to even (IEC 60559)"),
  C("pg_sign", P, "body_mass_g ~ sign(bill_length_mm - 44)"),
  C("pg_relevel_island", P, "body_mass_g ~ relevel(island, ref = \"Dream\")", newdata = TRUE),
  C("pg_relevel_species", P, "body_mass_g ~ relevel(species, ref = \"Gentoo\")", newdata = TRUE),
  C("pg_relevel_positional", P, "body_mass_g ~ relevel(sex, \"male\")", newdata = TRUE),
  C("pg_as_numeric_island", P, "body_mass_g ~ as.numeric(island)"),
  C("pg_bs_df4", P, "body_mass_g ~ bs(flipper_length_mm, df = 4)", newdata = TRUE),
  C("pg_bs_knots", P, "body_mass_g ~ bs(flipper_length_mm, knots = c(190, 210))", newdata = TRUE),
  C("pg_bs_df5_degree2", P, "body_mass_g ~ bs(flipper_length_mm, df = 5, degree = 2)", newdata = TRUE),
  C("pg_bs_plain", P, "body_mass_g ~ bs(flipper_length_mm)", newdata = TRUE),
  C("pg_ns_df3", P, "body_mass_g ~ ns(flipper_length_mm, df = 3)", newdata = TRUE),
  C("pg_ns_knots", P, "body_mass_g ~ ns(flipper_length_mm, knots = c(190, 210))", newdata = TRUE),
  C("pg_ns_colon_species", P, "body_mass_g ~ ns(bill_length_mm, df = 3):species", newdata = TRUE),
  C("pg_splines_prefix", P, "body_mass_g ~ splines::ns(flipper_length_mm, df = 2)", newdata = TRUE),
  C("pg_poly_raw", P, "body_mass_g ~ poly(bill_length_mm, 2, raw = TRUE)", newdata = TRUE),
  C("pg_poly3_na", P, "body_mass_g ~ poly(bill_length_mm, 3)", note = "orthogonal poly() refuses NAs: model.frame evaluates it before na.omit"),
  C("pg_poly_year", P, "body_mass_g ~ poly(year, 2)", newdata = TRUE),
  C("cc_poly3", "penguins_complete", "body_mass_g ~ poly(bill_length_mm, 3)", newdata = TRUE),
  C("cc_poly_degree_named", "penguins_complete", "body_mass_g ~ poly(bill_length_mm, degree = 2) + species", newdata = TRUE),
  C("cc_poly_colon_sex", "penguins_complete", "body_mass_g ~ poly(bill_length_mm, 2):sex", newdata = TRUE),
  C("cc_dot", "penguins_complete", "body_mass_g ~ ."),
  C("pg_scale", P, "body_mass_g ~ scale(bill_length_mm)", newdata = TRUE,
    note = "R's safe prediction does re-apply scale(): stats:::makepredictcall.default stores the training center and scale"),
  C("pg_species_scale", P, "body_mass_g ~ species + scale(flipper_length_mm)", newdata = TRUE),
  C("pg_response_on_right", P, "body_mass_g ~ bill_length_mm + body_mass_g"),
  C("pg_cut3", P, "body_mass_g ~ cut(bill_length_mm, 3)", newdata = TRUE,
    note = "cut() with a number of breaks is not safe in R: new data get other intervals, and model.frame's xlev check refuses them"),
  C("pg_cut_breaks", P, "body_mass_g ~ cut(bill_length_mm, c(30, 40, 50, 60))", newdata = TRUE),
  C("pg_cut_breaks_named", P, "body_mass_g ~ cut(flipper_length_mm, breaks = c(170, 190, 210, 240))", newdata = TRUE),
  C("pg_offset_log", P, "body_mass_g ~ offset(log(flipper_length_mm)) + species"),
  C("pg_offset_plain", P, "body_mass_g ~ offset(bill_depth_mm) + bill_length_mm"),
  C("pg_backticks", P, "`body_mass_g` ~ `bill_length_mm` + `flipper_length_mm`"),
  C("pg_cbind", P, "cbind(body_mass_g, flipper_length_mm) ~ species"),
  C("pg_cbind_dot", P, "cbind(bill_length_mm, bill_depth_mm) ~ .", note = "'.' leaves out every variable named on the left (all.vars), so neither bill_length_mm nor bill_depth_mm is on the right"),
  C("pg_log_response_dot", P, "log(body_mass_g) ~ .", note = "'.' leaves out body_mass_g, a variable of the response log(body_mass_g)"),
  C("pg_I_response_dot", P, "I(body_mass_g/1000) ~ . - year"),
  C("pg_sqrt_response", P, "sqrt(body_mass_g) ~ species"),
  C("pg_factor_response_dot", P, "species ~ ."),
  C("pg_factor_response", P, "sex ~ bill_length_mm + body_mass_g"),
  C("pg_dot_plus_interaction", P, "body_mass_g ~ . + species:bill_length_mm - year"),
  C("pg_two_tildes", P, "body_mass_g ~ bill_length_mm ~ species"),
  C("pg_bar_factor", P, "body_mass_g ~ bill_length_mm | species"),
  C("pg_bar_numeric", P, "body_mass_g ~ bill_length_mm | bill_depth_mm"),
  C("pg_unknown_column", P, "body_mass_g ~ flipper"),
  C("pg_unknown_function", P, "body_mass_g ~ nosuchfunction(bill_length_mm)"),
  # derived frames
  C("ord_island", "penguins_island_ordered", "body_mass_g ~ island"),
  C("ord_island_star_sex", "penguins_island_ordered", "body_mass_g ~ island * sex"),
  C("ord_zero_island", "penguins_island_ordered", "body_mass_g ~ 0 + island"),
  C("ord_dot", "penguins_island_ordered", "body_mass_g ~ ."),
  C("grade", "penguins_grade", "body_mass_g ~ grade"),
  C("grade_colon_sex", "penguins_grade", "body_mass_g ~ grade:sex"),
  C("grade_plus_species", "penguins_grade", "body_mass_g ~ grade + species"),
  C("grade_zero", "penguins_grade", "body_mass_g ~ 0 + grade"),
  C("grade_as_numeric", "penguins_grade", "body_mass_g ~ as.numeric(grade)"),
  C("grade_factor", "penguins_grade", "body_mass_g ~ factor(grade)", note = "factor() of an ordered factor stays ordered"),
  C("logical_male", "penguins_male", "body_mass_g ~ male"),
  C("logical_male_star_species", "penguins_male", "body_mass_g ~ male * species"),
  C("logical_male_colon_bill", "penguins_male", "body_mass_g ~ male:bill_length_mm"),
  C("logical_zero_male", "penguins_male", "body_mass_g ~ 0 + male"),
  C("logical_response", "penguins_male", "male ~ bill_length_mm + species"),
  C("spaced_backticks", "penguins_spaced", "`body mass/g` ~ `bill length (mm)` + `bill depth (mm)`"),
  C("spaced_I", "penguins_spaced", "`body mass/g` ~ I(`bill length (mm)`^2) + log(`bill depth (mm)`)"),
  C("spaced_dot", "penguins_spaced", "`body mass/g` ~ ."),
  C("spaced_interaction", "penguins_spaced", "`body mass/g` ~ `bill length (mm)`:species"),
  # iris, dotted names
  C("iris_dot", "iris", "Sepal.Length ~ ."),
  C("iris_star", "iris", "Sepal.Length ~ Petal.Width*Species"),
  C("iris_backticks", "iris", "`Sepal.Length` ~ `Petal.Length`"),
  C("iris_nested", "iris", "log(Sepal.Length) ~ Species/Petal.Length"),
  C("iris_no_intercept_colon", "iris", "Sepal.Length ~ Species:Petal.Length - 1"),
  C("iris_poly", "iris", "Sepal.Length ~ poly(Petal.Length, 2)", newdata = TRUE),
  C("iris_factor_response", "iris", "Species ~ Sepal.Length + Petal.Width"),
  C("iris_dot_minus", "iris", "Sepal.Length ~ . - Species"),
  C("iris_dot_square", "iris", "Sepal.Length ~ .^2"),
  C("iris_dot_star_species", "iris", "Sepal.Length ~ (. - Species) * Species"),
  # ISLR
  C("college_dot", "College", "Apps ~ ."),
  C("college_log", "College", "log(Apps) ~ Private + log(Accept) + Top10perc"),
  C("college_dot_minus", "College", "Grad.Rate ~ . - Apps - Accept"),
  C("boston_poly5", "Boston", "medv ~ poly(lstat, 5)", newdata = TRUE),
  C("boston_lstat_star_age", "Boston", "medv ~ lstat * age"),
  C("boston_dot", "Boston", "medv ~ ."),
  C("boston_I_square", "Boston", "medv ~ lstat + I(lstat^2)"),
  C("boston_log_rm", "Boston", "medv ~ log(rm) + factor(chas)", newdata = TRUE),
  C("boston_dot_minus", "Boston", "medv ~ . - age - indus"),
  C("carseats_interactions", "Carseats", "Sales ~ . + Income:Advertising + Price:Age"),
  C("carseats_dot", "Carseats", "Sales ~ ."),
  C("carseats_log_sales", "Carseats", "log(Sales) ~ Price", note = "one Sales is 0: the response holds -Inf, which na.omit keeps"),
  C("carseats_shelveloc", "Carseats", "Sales ~ ShelveLoc + Price", newdata = TRUE),
  C("carseats_relevel", "Carseats", "Sales ~ relevel(ShelveLoc, ref = \"Medium\") * US", newdata = TRUE),
  C("auto_poly_origin", "Auto", "mpg ~ poly(horsepower, 2) + factor(origin)", newdata = TRUE),
  C("auto_lag", "Auto", "mpg ~ lag(mpg, 1) + lag(mpg, 2)"),
  C("auto_dot_minus_name", "Auto", "mpg ~ . - name"),
  C("auto_I_square", "Auto", "mpg ~ horsepower + I(horsepower^2)"),
  C("auto_interactions", "Auto", "mpg ~ cylinders * displacement + displacement * weight"),
  C("auto_log", "Auto", "log(mpg) ~ log(horsepower) + log(weight) + factor(cylinders)", newdata = TRUE),
  C("wage_ns_education", "Wage", "wage ~ ns(age, 5) + education", newdata = TRUE),
  C("wage_poly4", "Wage", "wage ~ poly(age, 4)", newdata = TRUE),
  C("wage_bs_knots", "Wage", "wage ~ bs(age, knots = c(25, 40, 60))", newdata = TRUE),
  C("wage_logical_response", "Wage", "I(wage > 250) ~ poly(age, 4)"),
  C("wage_cut4", "Wage", "wage ~ cut(age, 4)", newdata = TRUE),
  C("wage_dot", "Wage", "wage ~ .", note = "region has a single level in this data"),
  C("wage_dot_minus", "Wage", "wage ~ . - logwage - region"),
  C("wage_dot_minus_region", "Wage", "wage ~ . - region", note = "a removed single-level factor still fails: model.matrix sets contrasts for every factor of the model frame"),
  C("wage_all_but_region", "Wage", "wage ~ year + age + maritl + race + education + jobclass + health + health_ins"),
  C("hitters_log_salary", "Hitters", "log(Salary) ~ . + I(Years^2) + relevel(League, ref = \"N\")", newdata = TRUE),
  C("hitters_dot", "Hitters", "Salary ~ ."),
  C("default_dot", "Default", "default ~ ."),
  C("default_student", "Default", "default ~ balance + student"),
  C("credit_dot_minus_id", "Credit", "Balance ~ . - ID"),
  C("credit_income_star_student", "Credit", "Balance ~ Income * Student"),
  C("credit_gender", "Credit", "Balance ~ Gender", note = "the level ' Male' has a leading space in the CSV; sorted first in the C locale")
)

ids <- vapply(cases, `[[`, "", "id")
if (anyDuplicated(ids)) stop("duplicate ids: ", paste(ids[duplicated(ids)], collapse = ", "))

results <- lapply(cases, function(cs) run_case(cs$id, cs$data, cs$formula, cs$newdata, cs$note))

# ---------------------------------------------------------------------------
# lm() coefficients.
lm_of <- function(id, data, formula) {
  f <- eval(str2lang(formula), globalenv())
  fit <- lm(f, data = DATA[[data]])
  s <- summary(fit)
  list(data = data, formula = formula, n = nobs(fit),
       names = arr(names(coef(fit))), coefficients = arr(unname(coef(fit))),
       sigma = s$sigma, r_squared = s$r.squared)
}
lms <- list(
  carseats_interactions = lm_of("carseats_interactions", "Carseats", "Sales ~ . + Income:Advertising + Price:Age"),
  pg_dot_minus_year = lm_of("pg_dot_minus_year", P, "body_mass_g ~ . - year")
)

# ---------------------------------------------------------------------------
doc <- paste(
  "Expected results from R for nnfit's formula layer.  For each case: mf <- model.frame(f, data, na.action = na.omit);",
  "mm <- model.matrix(terms(mf), mf), as lm() does (not model.matrix(f, mf), which re-expands '.' against the model frame's own columns when the response is transformed).",
  "columns = colnames(mm); assign = attr(mm, 'assign'); rows = 0-based positions (in the data's row order) of the rows",
  "the model frame kept; n = nrow(mm); x_head = the first min(n, 60) rows of mm, one array per row;",
  "x_sum / x_sumsq = column sums / sums of squares over all n rows; terms = attributes of terms(mf)",
  "(term_labels, order, intercept, response, variables as R deparses them, offset = 0-based positions in variables,",
  "factors = the 0/1/2 factors matrix, row-major, rows = variables, columns = terms; 2 means the factor is coded",
  "by indicators of all its levels (contrasts not applied) in that term); contrasts = attr(mm, 'contrasts').",
  "response = model.response(mf): {type: numeric, values} (with nonfinite {count, first_position, first_row,",
  "first_value} when some are not finite; first_position indexes the kept rows, first_row the data), {type: factor",
  "or ordered, levels, codes (0-based)}, {type: matrix, colnames, ncol, values row-major}, {type: logical, values};",
  "null for a one-sided formula.  response_name = deparse(f[[2]]).  offset = model.offset(mf) {head (first 60), sum, sumsq}.",
  "warnings = the messages of every warning R gave (model.frame and model.matrix), error = R's error message or null",
  "(then error_stage says where: parse, model.frame or model.matrix, and no other results are given).",
  "newdata (cases with a data-dependent transform): train on data rows [train_rows[0], train_rows[1]) (the first",
  "floor(2 nrow / 3)), then tt <- delete.response(terms(mf_train)); mm_new <- model.matrix(tt, model.frame(tt, rest,",
  "xlev = .getXlevels(terms(mf_train), mf_train), na.action = na.omit)); rows = positions in the full data;",
  "train = {n, columns, x_sum, x_sumsq, predvars (deparsed, showing what R learned)}.",
  "x_nonfinite (only when the model matrix holds Inf/-Inf/NaN): [{column, count, first_position, first_row, first_value}].",
  "newdata also has warnings, and error/error_stage (train, newdata model.frame, newdata model.matrix) when R refuses.",
  "note: a remark on what the case shows.  Warning and error texts are R's, in English, with plain ASCII quotes",
  "(options(useFancyQuotes = FALSE); an interactive UTF-8 session shows curly quotes instead).",
  "data: each base data set's nrow, columns, types (R typeof, or factor/ordered), factor levels, source and md5 of the (uncompressed) CSV bytes.",
  "lm: coef(lm(formula, data)) with names, nobs, sigma and r.squared of summary().",
  "Numbers: doubles written with the fewest of 15/16/17 significant digits that read back identically;",
  "NA -> null, NaN -> \"NaN\", Inf -> \"Inf\", -Inf -> \"-Inf\".  Logical values true/false.")

fixture <- list(
  r_version = R.version.string,
  made_by = "tests/r/formulas.R",
  doc = doc,
  read_doc = paste("Sys.setlocale('LC_COLLATE', 'C'); read.csv(path, stringsAsFactors = TRUE, na.strings = c('NA', ''),",
                   "check.names = FALSE) for the ISLR CSVs and nnfit's penguins.csv; iris is datasets::iris."),
  data = lapply(setNames(names(data_doc), names(data_doc)), function(nm) c(data_doc[[nm]], describe_data(DATA[[nm]]))),
  frames_doc = frames_doc,
  frames = FRAMES,
  functions_doc = functions_doc,
  cases = results,
  lm = lms
)

dir.create(dirname(out_path), showWarnings = FALSE, recursive = TRUE)
con <- file(out_path, open = "w", encoding = "UTF-8")
writeLines(to_json(fixture), con, useBytes = TRUE)
close(con)
message(sprintf("wrote %s: %d cases (%d with an R error), %.1f KB", out_path, length(results),
                sum(vapply(results, function(r) !is.null(r$error), NA)), file.size(out_path) / 1024))
