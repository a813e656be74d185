"""Review: reviewers checking and overriding the labeler's verdicts before an iteration trains.

Owns the review service (decide, undo, exclude, the verdict margin; pairs rebuilt from the effective
verdicts), the selectors the review pages read, the labeler audit sample, calibration against reviewers
and a second labeler, and the review pages themselves.

Imports iterations (settings, kept counts, charts), accounts and the models; never transfer or jobs.
"""
