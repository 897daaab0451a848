# Writes austen-paragraphs.csv: every paragraph of Jane Austen's six novels, from the R package
# janeaustenr 1.0.0 (Debian's r-cran-janeaustenr, MIT; the texts are Project Gutenberg's, public
# domain). make_austen.py then samples the bundled documents from it.
#   Rscript austen.R /path/to/site-library
args <- commandArgs(trailingOnly = TRUE)
if (length(args)) .libPaths(c(args[1], .libPaths()))
library(janeaustenr)
books <- austen_books()
out <- do.call(rbind, lapply(split(books, books$book), function(b) {
  blank <- trimws(b$text) == ""
  id <- cumsum(blank)                       # a paragraph: the lines between two blank lines
  paragraphs <- tapply(trimws(b$text[!blank]), id[!blank], paste, collapse = " ")
  data.frame(novel = as.character(b$book[1]), text = unname(paragraphs), stringsAsFactors = FALSE)
}))
write.csv(out, "austen-paragraphs.csv", row.names = FALSE, fileEncoding = "UTF-8")
