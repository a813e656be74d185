"""Export and import in the browser, staff only: an iteration's pairs streamed as a download; instructions
uploaded (a JSONL and a zip of images) and imported by a CPU worker while the page shows its progress."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django_htmx.http import HttpResponseStopPolling

from webapp import slots
from webapp.accounts import audit
from webapp.accounts.permissions import staff_required
from webapp.models import AuditAction, ImportState, InstructionImport, Iteration, Job, JobState
from webapp.transfer.forms import ImportForm

EXPORTS_BUSY = "Other exports are running (EXPORT_CONCURRENCY at once): download again in a minute."


@staff_required("webapp.view_preferencepair")
def iteration_export(request, number, fmt):
    """Stream the export: its rows are read a chunk at a time and sent as they are written."""
    from webapp.transfer.exporting import FORMATS, ExportFailed, export_download  # pulls in `datasets`: only when used

    iteration = get_object_or_404(Iteration, number=number)
    if fmt not in FORMATS:
        raise Http404("no such export format")

    slot = slots.take(slots.EXPORT, settings.EXPORT_CONCURRENCY, session=True)
    if slot is None:  # exports at once held every web worker: the login page took 45 s
        return HttpResponse(EXPORTS_BUSY, status=429, content_type="text/plain; charset=utf-8")
    try:
        download = export_download(iteration, fmt)
    except ExportFailed as exc:
        slots.release(slots.EXPORT, slot)
        messages.error(request, str(exc))
        return redirect("iteration", number=number)
    audit.record(AuditAction.EXPORT, iteration=iteration, target=download.filename, format=fmt)
    chunks = slots.HeldWhileStreaming(download.chunks, slots.EXPORT, slot)
    response = StreamingHttpResponse(chunks, content_type=download.content_type)
    response["Content-Disposition"] = content_disposition_header(True, download.filename)
    return response


@staff_required("webapp.add_instructionimport")
def import_new(request):
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.save(request.user)
        return redirect("import", pk=upload.pk)
    recent = InstructionImport.objects.select_related("uploaded_by")[:20]
    context = {"form": form, "imports": recent, "limit": settings.IMPORT_MAX_BYTES}
    return render(request, "transfer/new.html", context)


@staff_required("webapp.view_instructionimport")
def import_detail(request, pk):
    upload = get_object_or_404(InstructionImport, pk=pk)
    running = upload.state in (ImportState.PENDING, ImportState.RUNNING)
    busy = busy_with() if upload.state == ImportState.PENDING else None
    context = {"upload": upload, "running": running, "busy": busy}
    if request.htmx:
        response = render(request, "transfer/detail.html#progress", context)
        # The page polls while the import works; a finished one tells HTMX to stop.
        return response if running else HttpResponseStopPolling(response.content)
    return render(request, "transfer/detail.html", context)


def busy_with() -> Job | None:
    """A job the workers are running, to say why an upload still waits (it read a bare "pending" while the only
    worker trained)."""
    return Job.objects.filter(state=JobState.RUNNING).select_related("iteration").order_by("started_at").first()
