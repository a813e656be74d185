"""What every template may ask about the signed-in user's role, so pages offer only what the user may open."""

from django.utils.functional import SimpleLazyObject

from webapp.accounts.permissions import can_review


def roles(request):
    """`can_review`, looked up (one query) only by a template that asks, unless the view's check
    (`reviewer_required`) already found it."""
    return {"can_review": SimpleLazyObject(lambda: getattr(request, "can_review", False) or can_review(request.user))}
