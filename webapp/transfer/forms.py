"""The upload form: what a staff member sends to be imported; the worker checks the files themselves."""

from django import forms
from django.db import transaction

from webapp.accounts import audit
from webapp.iterations.dispatch import enqueue_import
from webapp.models import AuditAction, InstructionImport


class ImportForm(forms.ModelForm):
    """Instructions to import: a JSONL and a zip of its images, checked by the worker that imports them."""

    class Meta:
        model = InstructionImport
        fields = ["jsonl", "images", "source"]
        labels = {"jsonl": "Instructions (JSONL)", "images": "Images (zip)"}
        help_texts = {
            "jsonl": "One object a line: image (a path inside the zip), question, optional source, split, objects.",
            "images": "A zip of the images the lines name.",
            "source": "For lines that name no source.",
        }
        widgets = {
            "jsonl": forms.ClearableFileInput(attrs={"accept": ".jsonl,.json,.txt"}),
            "images": forms.ClearableFileInput(attrs={"accept": ".zip"}),
        }

    def save(self, user):
        """Store the files and send the import to a CPU worker, once both are saved and on the audit trail."""
        upload = super().save(commit=False)
        upload.jsonl_name = self.cleaned_data["jsonl"].name[:255]
        upload.images_name = self.cleaned_data["images"].name[:255]
        upload.uploaded_by = user
        with transaction.atomic():
            upload.save()
            audit.record(
                AuditAction.UPLOAD, target=str(upload), jsonl=upload.jsonl_name, images=upload.images_name,
                source=upload.source,
            )  # fmt: skip
            enqueue_import(upload)
        return upload
