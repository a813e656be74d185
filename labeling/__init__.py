"""RLAIF-V labeling: generate, divide, conquer, combine. Plain Python; never imports Django."""
