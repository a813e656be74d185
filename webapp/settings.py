"""All settings, read from the environment. Out of the box: SQLite and a file-based broker under var/.

DEBUG is off unless DEBUG=1 says otherwise (`make demo` and the tests set it), so a server started without it
shows no debug pages and needs SECRET_KEY (or SECRET_KEY_FILE) and ALLOWED_HOSTS. Production also sets
DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://…; see docker/app.env.example.
"""

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from labeling.engine_options import check_options
from webapp.env import env_bool, env_float, env_int, env_json, env_list, env_path, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_secret("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off")
    # Development only: a random key kept under var/ so logins survive restarts.
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off")
if not DEBUG and "*" in ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the site's hosts when DEBUG is off, not '*'")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "webapp.apps.StudioAdminConfig",  # django.contrib.admin with the project's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "webapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapp.accounts.security.ContentSecurityPolicyMiddleware",
    "webapp.transfer.body_limit.BodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "webapp.accounts.session_renewal.SessionRenewalMiddleware",
    "webapp.accounts.actors.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webapp.accounts.security.PrivatePagesMiddleware",
    "webapp.not_found.StyledNotFoundMiddleware",
    # Last: turns a login refused by the lockout into its page (AXES_LOCKOUT_TEMPLATE).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.accounts.context_processors.roles",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so a test's Celery worker (another process) sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # A web process and a worker write at once: take the write lock up front and use WAL.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    # The reviews' (reviewer, iteration, claim) index carries two more columns for PostgreSQL's index-only scans;
    # SQLite builds it without them, as it should, and need not say so on every command.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Login throttling (django-axes), on the site's login and the admin's: after LOGIN_FAILURE_LIMIT failed logins
# for one username, or from one address, every login for it (the right password too) is refused for
# LOGIN_LOCKOUT_MINUTES, or until staff delete its access attempt in the admin (Axes › Access attempts).
# Failed and successful logins are logged (logger "axes") and kept as access logs in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: a username, or an address
# The pair list's search (webapp/review/search.py): its statement timeout on PostgreSQL, and searches a minute
# per user.
IMPORT_MAX_RESENDS = env_int("IMPORT_MAX_RESENDS", 3)  # an upload whose worker keeps dying, then it fails
SEARCH_TIMEOUT_MS = env_int("SEARCH_TIMEOUT_MS", 1500)
SEARCH_RATE = env_int("SEARCH_RATE", 30)
SEARCH_CONCURRENCY = env_int("SEARCH_CONCURRENCY", 1)  # searches at once across the site (PostgreSQL)
EXPORT_CONCURRENCY = env_int("EXPORT_CONCURRENCY", 2)  # downloads of pairs at once across the site (PostgreSQL)
AXES_RESET_ON_SUCCESS = True  # only that username's failures from that address (webapp.accounts.logins)
AXES_HANDLER = "webapp.accounts.logins.LockoutHandler"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_VERBOSE = False  # no "AXES: BEGIN …" on every command; a login's log line still names its username and address
AXES_SENSITIVE_PARAMETERS = []  # the logs name the username and the address (never the password)
AXES_LOCKOUT_CALLABLE = "webapp.accounts.logins.locked_out"
AXES_CLIENT_IP_CALLABLE = "webapp.accounts.actors.client_address"  # the audit trail's rule too
# Behind the proxy every request comes from the proxy's address: name the header it sets to the client's own
# (e.g. X-Real-IP; it must overwrite a client's). Unset, the connection's address (REMOTE_ADDR) is used.
CLIENT_ADDRESS_HEADER = env_str("CLIENT_ADDRESS_HEADER", "")

# Sessions end after SESSION_IDLE_MINUTES without a request and when the browser closes. A request renews the
# session once its last renewal is SESSION_RENEW_SECONDS old (webapp/accounts/session_renewal.py), not on every request.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_MINUTES", 60) * 60
SESSION_RENEW_SECONDS = 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
MEDIA_URL = "media/"
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
MODELS_DIR = env_path("MODELS_DIR", VAR_DIR / "models")
# Model names resolve to folders under MODELS_DIR, and data files a config names (COCO's ground truth) lie under
# DATA_DIR: nowhere else (webapp/places.py).
DATA_DIR = env_path("DATA_DIR", VAR_DIR / "data")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploaded and imported images: what Pillow may open, and how big.
IMAGE_FORMATS = env_list("IMAGE_FORMATS", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
IMAGE_MAX_BYTES = env_int("IMAGE_MAX_BYTES", 20 * 1024 * 1024)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = IMAGE_MAX_BYTES  # a request's fields; uploaded files go to disk, see below
# Imports uploaded in the browser (a JSONL and a zip of images). A request body over IMPORT_MAX_BYTES is refused
# before it is read (webapp.transfer.body_limit.BodyLimitMiddleware); the zip is refused when it unpacks to more than
# IMPORT_MAX_UNPACKED_BYTES, holds over IMPORT_MAX_MEMBERS members, or a member expands over IMPORT_MAX_RATIO
# times (a zip bomb); no member may be larger than IMAGE_MAX_BYTES.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 1024**3)
IMPORT_MAX_UNPACKED_BYTES = env_int("IMPORT_MAX_UNPACKED_BYTES", 4 * 1024**3)
IMPORT_MAX_MEMBERS = env_int("IMPORT_MAX_MEMBERS", 100_000)
IMPORT_MAX_RATIO = env_int("IMPORT_MAX_RATIO", 200)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default: larger uploaded files are spooled to a temporary file

# Celery: GPU work (generate, label, train) on queue "gpu" ("gpu-xN": models spread over N GPUs), the rest on "cpu".
# Without CELERY_BROKER_URL the broker is a folder under var/, so the demo needs no server.
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(_BROKER_DIR / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Security. Production (DEBUG=0) is HTTPS only; `manage.py check --deploy` passes with it (tests/test_production.py).
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
# Behind a TLS-terminating proxy, name the header it sets to "https" (e.g. X-Forwarded-Proto). Only when the proxy
# always sets or overwrites it: a client could otherwise claim HTTPS itself.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "")
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
# How many proxies in front of the app append the client's address to X-Forwarded-For (the audit trail's
# "from where"). 0: the header is ignored, since any client can send it; the connection's address is used.
FORWARDED_FOR_PROXIES = env_int("FORWARDED_FOR_PROXIES", 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Sent on every response, DEBUG included, by webapp.accounts.security.ContentSecurityPolicyMiddleware (Django 5.2 has no
# CSP of its own). Templates therefore carry no inline <script>, <style>, style="" or on*="" attributes.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
# Browser features no page uses, switched off for this site and anything it might embed.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), hid=(), "
    "midi=(), magnetometer=(), gyroscope=(), accelerometer=(), display-capture=()"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# Engines and orchestration.
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1")
OPENAI_API_KEY = env_secret("OPENAI_API_KEY") or "none"
# The OpenAI-compatible server whose model (config "mmhal_judge") judges MMHal-Bench answers; the engine's by default.
JUDGE_BASE_URL = env_str("JUDGE_BASE_URL", OPENAI_BASE_URL)
JUDGE_API_KEY = env_secret("JUDGE_API_KEY") or OPENAI_API_KEY
CHUNK_SIZE = env_int("CHUNK_SIZE", 32)
TORCH_DEVICE = env_str("TORCH_DEVICE", "cpu")
# Engine options every iteration starts from, per engine, e.g. {"vllm": {"gpu_memory_utilization": 0.85}}
# (labeling/engine_options.py lists them); an iteration's config key "engine_options" overrides them per role.
ENGINE_OPTIONS = env_json("ENGINE_OPTIONS", {})
try:
    ENGINE_OPTIONS = {engine: check_options(engine, options) for engine, options in dict(ENGINE_OPTIONS).items()}
except (TypeError, ValueError) as error:
    raise ImproperlyConfigured(f"ENGINE_OPTIONS: {error}") from None
# GiB of GPU memory a worker's loaded models may hold together. Unset: one stage's models at a time.
GPU_MEMORY_BUDGET_GB = env_float("GPU_MEMORY_BUDGET_GB", None)
# A job or an uploaded import whose worker has not reported for this long is presumed dead and re-queued.
STALE_JOB_SECONDS = env_int("STALE_JOB_SECONDS", 600)
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-jobs": {"task": "webapp.tasks.requeue_stale_jobs", "schedule": max(STALE_JOB_SECONDS / 4, 5)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
