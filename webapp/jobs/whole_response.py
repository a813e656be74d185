"""The whole-response strategy, the paper's baseline to divide and conquer: `config["strategy"] = "whole_response"`.

The labeler judges each answer whole, with one question ("Is it true that <answer>?",
labeling.whole_response), rather than claim by claim. So that labelling, scores, pairs and the review pages
stay those of RLAIF-V, each answer becomes one claim: its text the whole answer, its question the
whole-response question. The runner (webapp.jobs.runner) then runs:
- divide: one claim per generated answer (an empty answer fails its split, as the rule splitter's does);
- label: the RLAIF-V label stage, the iteration's labeler answering each question with the image;
- combine: the RLAIF-V combine stage: score 0 for an accepted answer, −1 for a rejected one, and pairs of
  accepted against rejected answers. Where the truth is known, an answer is true when every object it names is
  in the image.
A reviewer's decision on the claim overrides the labeler's verdict on the whole answer.
"""

from labeling.shapes import description_is_true
from labeling.whole_response import whole_response_question
from webapp import limits
from webapp.jobs import rlaifv
from webapp.jobs.base import commit_chunk
from webapp.models import Claim, Job, Response, ResponseStatus

DIVIDED_BY = "whole_response"


def divide(job: Job) -> None:
    responses = list(
        Response.objects.filter(
            iteration=job.iteration, instruction_id__in=job.instruction_ids, status=ResponseStatus.GENERATED
        )
    )
    job.start(total=len(responses))
    claims = []
    for response in responses:
        if response.text.strip():
            response.status, response.error = ResponseStatus.DIVIDED, ""
            question = whole_response_question(response.text)[: limits.ANSWER]
            claims.append(
                Claim(response=response, index=0, text=response.text, question=question, divided_by=DIVIDED_BY)
            )
        else:
            response.status, response.error = ResponseStatus.SPLIT_FAILED, "empty answer"
    job.progress(len(responses))

    def write():
        Claim.objects.bulk_create(claims, ignore_conflicts=True)
        Response.objects.bulk_update(responses, ["status", "error"], batch_size=500)

    commit_chunk(job, write)


def combine(job: Job) -> None:
    rlaifv.combine(job, is_true=description_is_true)
