"""Transfer: data in and out. Instructions imported from JSONL and uploads, RLAIF-V parquet imported as an
iteration, pairs exported (TRL, JSONL, RLAIF-V), the zips and images that travel with them.

Owns every check an upload gets (request size, zip members, images), the image store and the lock all
writes to it take, the upload form and the import and export pages, and the serving of stored images.

Imports iterations (an RLAIF-V import becomes an iteration; an upload is sent to a queue), accounts and
the models; never review or jobs. The worker side of an upload is webapp/jobs/imports.py.
"""
