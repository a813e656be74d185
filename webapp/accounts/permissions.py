"""Who may do what. Login is enforced for every page by LoginRequiredMiddleware; these checks come on top.

One decorator per rule, so a view states its rule once at its top instead of repeating the check inline.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied

REVIEWER_GROUP = "reviewer"
REVIEWERS_ONLY = (
    f"This page is for reviewers and staff. Reviewing needs membership of the {REVIEWER_GROUP} group: "
    "ask a staff member to add you."
)
STAFF_ONLY = "Only staff may do this: create, launch, approve, resume or cancel iterations."
MISSING_PERMISSION = "Your staff account lacks the permission this needs: ask an administrator to grant it"


def can_review(user) -> bool:
    """Staff and members of the reviewer group may review; other logged-in users may not."""
    if not user.is_authenticated:
        return False
    return user.is_staff or user.groups.filter(name=REVIEWER_GROUP).exists()


def reviewer_required(view):
    """Refuse (403) anyone who may not review: the review pages and the iteration pages. The message is what the
    403 page tells them, so it says how to get in."""

    @wraps(view)
    def checked(request, *args, **kwargs):
        if not can_review(request.user):
            raise PermissionDenied(REVIEWERS_ONLY)
        request.can_review = True  # checked: the page's templates ask again (context_processors.roles)
        return view(request, *args, **kwargs)

    return checked


def staff_required(permission: str):
    """Refuse (403) anyone but staff holding `permission` ("webapp.change_iteration"), as the admin checks
    the same staff member: creating and driving iterations, drawing audits, moving the margin, importing and
    exporting. Joining the reviewer group would not help, so the message does not suggest it."""

    def decorator(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            if not request.user.is_staff:
                raise PermissionDenied(STAFF_ONLY)
            if not request.user.has_perm(permission):
                raise PermissionDenied(f"{MISSING_PERMISSION} ({permission}).")
            return view(request, *args, **kwargs)

        return checked

    return decorator
