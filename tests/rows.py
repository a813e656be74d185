"""An iteration's rows keyed by what is stable across runs, to compare a disturbed run with a clean one."""

from webapp.models import Claim, Iteration, PreferencePair, Response, Verdict


def snapshot(iteration: Iteration) -> dict:
    """The iteration's rows, keyed by what is stable across runs (instruction and seed, not primary keys)."""
    responses = Response.objects.filter(iteration=iteration)
    claims = Claim.objects.filter(response__iteration=iteration)
    verdicts = Verdict.objects.filter(claim__response__iteration=iteration)
    rows = {
        "responses": list(responses.values_list("instruction", "seed", "text", "status", "score")),
        "claims": list(claims.values_list("response__instruction", "response__seed", "index", "question")),
        "verdicts": [
            (i, s, n, round(y, 4), round(no, 4), a)
            for i, s, n, y, no, a in verdicts.values_list(
                "claim__response__instruction", "claim__response__seed", "claim__index", "p_yes", "p_no", "accepted"
            )
        ],
        "pairs": list(
            PreferencePair.objects.filter(iteration=iteration).values_list(
                "instruction", "chosen__seed", "rejected__seed", "score_gap"
            )
        ),
    }
    for name, values in rows.items():
        assert len(values) == len(set(values)), f"duplicate {name}"
    return {name: sorted(values, key=repr) for name, values in rows.items()}
