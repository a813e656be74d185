from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from webapp.iteration_actions import ACTIONS
from webapp.views import audit, calibration, dashboard, iterations, pages, review, transfer


class IterationActionConverter:
    """Only the actions an iteration has: any other word in their place is a 404, not a page that refuses."""

    regex = "|".join(ACTIONS)

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(IterationActionConverter, "action")

urlpatterns = [
    path("", dashboard.index, name="home"),
    path("review/pairs/", review.pair_list, name="review-pairs"),
    path("review/<int:number>/pairs/<int:left>-<int:right>/", review.pair_detail, name="review-pair"),
    path("review/<int:number>/spot-check/", review.spot_check, name="review-queue"),
    path("review/<int:number>/audit/", audit.audit, name="review-audit"),
    path("review/<int:number>/audit/start/", audit.audit_start, name="review-audit-start"),
    path("media/images/<str:shard>/<str:name>", pages.instruction_image, name="instruction-image"),
    path("iterations/", iterations.iteration_list, name="iterations"),
    path("iterations/new/", iterations.iteration_new, name="iteration-new"),
    path("iterations/<int:number>/", iterations.iteration_detail, name="iteration"),
    path("iterations/<int:number>/calibration/", calibration.calibration_page, name="iteration-calibration"),
    path("iterations/<int:number>/calibration/apply/", calibration.margin_apply, name="iteration-margin"),
    path("iterations/<int:number>/<action:action>/", iterations.iteration_action, name="iteration-action"),
    path("iterations/<int:number>/export/<str:fmt>/", transfer.iteration_export, name="iteration-export"),
    path("imports/", transfer.import_new, name="imports"),
    path("imports/<int:pk>/", transfer.import_detail, name="import"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

if settings.DEBUG:
    from django.contrib.staticfiles.urls import staticfiles_urlpatterns

    urlpatterns += staticfiles_urlpatterns()
