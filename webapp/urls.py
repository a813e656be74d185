from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from webapp.dashboard import views as dashboard
from webapp.ids import IdConverter
from webapp.iterations import views as iterations
from webapp.iterations.actions import ACTIONS
from webapp.review import audit_views as labeler_audit
from webapp.review import calibration_views as calibration
from webapp.review import views as review
from webapp.transfer import image_views as pages
from webapp.transfer import views as transfer


class IterationActionConverter:
    """Only the actions an iteration has: any other word in their place is a 404, not a page that refuses."""

    regex = "|".join(ACTIONS)

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(IterationActionConverter, "action")

# Every id in a path is one the database can hold (webapp/ids.py): a larger number is a 404, never a 500.
register_converter(IdConverter, "id")

urlpatterns = [
    path("", dashboard.index, name="home"),
    path("review/pairs/", review.pair_list, name="review-pairs"),
    path("review/<id:number>/pairs/<id:left>-<id:right>/", review.pair_detail, name="review-pair"),
    path("review/<id:number>/spot-check/", review.spot_check, name="review-queue"),
    path("review/<id:number>/audit/", labeler_audit.audit, name="review-audit"),
    path("review/<id:number>/audit/start/", labeler_audit.audit_start, name="review-audit-start"),
    path("media/images/<str:shard>/<str:name>", pages.instruction_image, name="instruction-image"),
    path("iterations/", iterations.iteration_list, name="iterations"),
    path("iterations/new/", iterations.iteration_new, name="iteration-new"),
    path("iterations/<id:number>/", iterations.iteration_detail, name="iteration"),
    path("iterations/<id:number>/calibration/", calibration.calibration_page, name="iteration-calibration"),
    path("iterations/<id:number>/calibration/apply/", calibration.margin_apply, name="iteration-margin"),
    path("iterations/<id:number>/<action:action>/", iterations.iteration_action, name="iteration-action"),
    path("iterations/<id:number>/export/<str:fmt>/", transfer.iteration_export, name="iteration-export"),
    path("imports/", transfer.import_new, name="imports"),
    path("imports/<id:pk>/", transfer.import_detail, name="import"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

if settings.DEBUG:
    from django.contrib.staticfiles.urls import staticfiles_urlpatterns

    urlpatterns += staticfiles_urlpatterns()
