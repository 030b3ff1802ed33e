"""Tollbooth settings: environment only (django-environ), defaults inline."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# Production sets SECRET_KEY; the well-known fallback is refused unless DEBUG=true (see the
# Security section). `make run` makes a random key of its own under var/.
DEV_SECRET_KEY = "dev-only-insecure-key-set-SECRET_KEY-in-production"
SECRET_KEY = env("SECRET_KEY", default=DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Never derived from PORT: the process manager gives every process (web, worker, beat) its own
# PORT, and links in emails sent by the worker must match the ones the web process builds.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    # django.contrib.admin, its login limited like the customers' (accounts/admin_site.py).
    "accounts.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "outbox",
    "accounts",
    "plans",
    "metering",
    "billing",
    "notifications",
    "dashboard",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.errors.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "dashboard.context_processors.portal",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tollbooth")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Threaded web workers (config/gunicorn.py sets DB_POOL_MAX_SIZE) share a bounded pool per
# process: a persistent connection per thread would be hundreds, past Postgres's max_connections.
# A request finding every connection busy waits DB_POOL_TIMEOUT seconds, then answers 503.
if env.int("DB_POOL_MAX_SIZE", default=0):
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them instead
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": env.int("DB_POOL_MAX_SIZE"), "timeout": env.float("DB_POOL_TIMEOUT", default=5.0),
        "max_idle": 60,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "tb",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            # Short timeouts: when Redis is down the API fails open quickly instead of hanging.
            "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=0.5),
            "SOCKET_TIMEOUT": env.float("REDIS_TIMEOUT", default=1.0),
            "CONNECTION_POOL_KWARGS": {"health_check_interval": 30},
        },
    }
}
# Redis Cluster: REDIS_URL names any node, or lists seed nodes separated by commas; the app and
# the cache share one redis.cluster.RedisCluster (core.redis_cluster).
REDIS_CLUSTER = env.bool("REDIS_CLUSTER", default=False)
if REDIS_CLUSTER:
    CACHES["default"]["OPTIONS"]["CONNECTION_FACTORY"] = "core.redis.ClusterConnectionFactory"
SESSION_ENGINE = "django.contrib.sessions.backends.db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal"
LOGOUT_REDIRECT_URL = "pricing"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# A mail server that accepts and never answers must not hold a worker (README "Deploying").
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Tollbooth <billing@tollbooth.local>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["metering.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["metering.permissions.HasActiveAccount"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "metering.parsers.BoundedJSONParser",  # size- and depth-bounded: bad JSON is a 400, never a 500
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "metering.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollbooth API",
    # The full description (limits, billing, the error codes table) and each operation's code
    # samples are written by metering.schema.public_docs_hook, with links built from SITE_URL.
    "DESCRIPTION": "Geocoding, text analysis and image analysis over HTTPS, billed per successful call.",
    "VERSION": "1.0.0",
    "EXTERNAL_DOCS": {"description": "Customer portal: keys, usage, plans", "url": SITE_URL.rstrip("/") + "/portal/"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "metering.schema.public_docs_hook",
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from our own static files: self-hosted installs need no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/v1",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Metering (README "The metered API").
METERING_FAIL_OPEN = env.bool("METERING_FAIL_OPEN", default=True)
# Calls answered 2xx are billed in one batch per process at most this often (off the request path).
METERING_COMMIT_SECONDS = env.float("METERING_COMMIT_SECONDS", default=0.5)
# A call still unanswered after this long lost its worker (timeout kill, OOM): the flush releases
# it, unbilled. Keep it well above gunicorn's --timeout (30 s by default).
METERING_CALL_MAX_SECONDS = env.int("METERING_CALL_MAX_SECONDS", default=120)
# Quota leases (README "The metered API", decisions "Quota leases"): far from every limit a worker
# reserves a block of calls in one Redis script and admits them locally for at most
# METERING_LEASE_MS; near any limit each call is metered alone, as with leases off. On by default:
# exact either way, and ahead on every bench figure (README "Benchmarks"); false meters every call
# with its own script.
METERING_LEASES = env.bool("METERING_LEASES", default=True)
METERING_LEASE_MS = env.int("METERING_LEASE_MS", default=250)
# /v1/usage is free but not unlimited: calls per minute per customer.
USAGE_API_PER_MINUTE = env.int("USAGE_API_PER_MINUTE", default=60)
# Keys that match no active key, per client address per minute, before /v1 stops looking them up.
API_INVALID_KEYS_PER_MINUTE = env.int("API_INVALID_KEYS_PER_MINUTE", default=30)
# Upper bound on how long a worker trusts its in-process copy of a key's config; the
# throttle script also reports config changes on every call, so most changes land at once.
KEY_CACHE_SECONDS = env.float("KEY_CACHE_SECONDS", default=5.0)
# After Redis fails, skip it for this long rather than paying a connect timeout per call.
REDIS_RETRY_SECONDS = env.float("REDIS_RETRY_SECONDS", default=2.0)
USAGE_FLUSH_SECONDS = env.int("USAGE_FLUSH_SECONDS", default=60)
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)
MAX_ACTIVE_KEYS = env.int("MAX_ACTIVE_KEYS", default=10)
SIGNUPS_PER_HOUR_PER_IP = env.int("SIGNUPS_PER_HOUR_PER_IP", default=10)
LOGINS_PER_15_MIN_PER_IP = env.int("LOGINS_PER_15_MIN_PER_IP", default=20)
# Failed sign-ins per account (customer or staff) from any address, per 15 minutes.
LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_15_MIN_PER_ACCOUNT", default=10)
PASSWORD_RESETS_PER_HOUR_PER_IP = env.int("PASSWORD_RESETS_PER_HOUR_PER_IP", default=5)
IMAGE_MAX_BYTES = env.int("IMAGE_MAX_BYTES", default=10 * 1024 * 1024)
IMAGE_MAX_PIXELS = env.int("IMAGE_MAX_PIXELS", default=40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Stripe (README "Billing"). Without STRIPE_SECRET_KEY, `make run` / `make test` start localstripe
# (config/embedded.py) and set all of these to point at it.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# Empty means Stripe itself; localstripe's address otherwise.
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
STRIPE_JS_URL = env("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20.0)
# Dunning: days after the first failed charge on which it is retried; the invoice becomes
# uncollectible when the last retry fails.
BILLING_RETRY_DAYS = [int(day) for day in env.list("BILLING_RETRY_DAYS", default=["1", "3", "5"])]
# The seller printed on every invoice PDF (README "Configuration"). SELLER_ADDRESS takes "\n" or
# " | " between its lines, since an env value is one line.
SELLER_NAME = env("SELLER_NAME", default="Tollbooth")
SELLER_ADDRESS = env("SELLER_ADDRESS", default="")
SELLER_TAX_ID = env("SELLER_TAX_ID", default="")

# Customer webhooks (notifications app): https only, and never to private, loopback,
# link-local or metadata addresses, unless these are set (development and tests).
WEBHOOKS_ALLOW_HTTP = env.bool("WEBHOOKS_ALLOW_HTTP", default=False)
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)

# Celery's broker: RabbitMQ (amqp://, what README "Deploying" recommends) or a plain Redis
# (redis://, the default: REDIS_URL). A Redis Cluster cannot be one: kombu's Redis transport talks
# to a single server and updates a queue's keys together, which a cluster spreads over its nodes.
# So with REDIS_CLUSTER the broker must be named, apart from REDIS_URL.
if REDIS_CLUSTER and env("CELERY_BROKER_URL", default=REDIS_URL) == REDIS_URL:
    raise ImproperlyConfigured(
        "REDIS_CLUSTER=true: set CELERY_BROKER_URL to a RabbitMQ (amqp://...) or a plain, non-cluster "
        "Redis (redis://...); a Redis Cluster cannot be Celery's broker."
    )
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One queue per kind of work, each with its own worker in the Procfile (README "Deploying"), so
# a webhook receiver that hangs or a slow mail server never holds up a charge, the month close or
# dunning. By name pattern, first match wins: billing's own emails go to `email`, and a task added
# later lands with its kind. Everything else (usage flushes, the outbox, housekeeping) stays on
# Celery's default queue, `celery`. Beat's tasks are routed the same way. Declared, so that a
# worker started without --queues (tests, a one-off) serves all of them.
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Every queue sits on the default exchange: a message goes straight into the queue of its name
# (a Redis list; on RabbitMQ a durable queue, which each publish declares first), so a broker that
# restarted empty (no bindings yet) cannot drop what the outbox drain sends before the workers have
# declared their queues again.
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(""), routing_key=name) for name in ("celery", "billing", "webhooks", "email")
]
CELERY_TASK_ROUTES = {
    "*_email_*": {"queue": "email"},
    "notifications.tasks.webhook_*": {"queue": "webhooks"},
    "billing.tasks.*": {"queue": "billing"},
}


def celery_broker_transport_options(url: str) -> dict:
    """The transport options that fit the broker at `url` (each transport has its own names).

    A broker that accepts connections but never answers would otherwise hold a request that
    publishes (through the outbox, after its commit) for minutes; with these it gives up in
    seconds, the outbox row stays pending and the beat drain sends it later.
    """
    timeout = env.float("CELERY_BROKER_TIMEOUT", default=2.0)
    if urlsplit(url).scheme in ("amqp", "amqps", "pyamqp"):
        return {
            "connect_timeout": timeout,
            # Socket timeouts: a publish (and its confirm) on a connection that went silent fails
            # instead of waiting for the kernel to notice.
            "read_timeout": timeout,
            "write_timeout": timeout,
            # AMQP's publish returns before the broker has the message; with confirms it returns
            # once RabbitMQ took it, which is what marking the outbox row sent promises.
            "confirm_publish": True,
        }
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout}


CELERY_BROKER_TRANSPORT_OPTIONS = celery_broker_transport_options(CELERY_BROKER_URL)
CELERY_BEAT_SCHEDULE = {
    # Every minute: move Redis usage counters into Postgres, so a Redis loss costs at
    # most one interval of counts (README "The metered API").
    "usage-flush": {
        "task": "metering.tasks.usage_flush",
        "schedule": USAGE_FLUSH_SECONDS,
    },
    # Every minute: hand the broker the tasks that commits left pending while it was
    # unreachable (signup and rotation emails, and anything else sent through the outbox).
    "outbox-drain": {
        "task": "outbox.tasks.outbox_drain",
        "schedule": 60,
    },
    # Nightly: forget outbox rows sent a week ago and once-only receipts a month old.
    "outbox-prune": {
        "task": "outbox.tasks.outbox_prune",
        "schedule": crontab(minute=15, hour=0),
    },
    # Every minute: webhook deliveries whose backoff ended get their next attempt; the
    # schedule lives in the database, so a restarted worker loses no retry.
    "webhook-retries": {
        "task": "notifications.tasks.webhook_retries_run",
        "schedule": 60,
    },
    # Nightly: forget delivered and failed webhook events older than 30 days, with their attempts.
    "webhook-events-prune": {
        "task": "notifications.tasks.webhook_events_prune",
        "schedule": crontab(minute=25, hour=0),
    },
    # 00:05 daily (UTC): alert points and spend-cap ceilings are counted within the current run,
    # so a day that starts a new one (after a plan change or a trial's end; everyone on the 1st)
    # recomputes them. The meter's month counters reset by themselves.
    "usage-limits-refresh": {
        "task": "notifications.tasks.usage_limits_refresh",
        "schedule": crontab(minute=5, hour=0),
    },
    # Nightly at 02:40 UTC, after the month close's safety-net window on the 1st would have
    # drafted invoices: compare Redis counters, Postgres usage, invoices and charges for last
    # month and this one, and store each drift for the staff dashboard (README "The metered API").
    "usage-reconcile": {
        "task": "dashboard.tasks.usage_reconcile_nightly",
        "schedule": crontab(minute=40, hour=2),
    },
    # Nightly: drop rate-limit bookkeeping and expired grace-period keys from caches.
    "keys-expire": {
        "task": "accounts.tasks.api_keys_expire",
        "schedule": crontab(minute=5, hour=0),
    },
    # Hourly: retry failed charges whose dunning day has come (BILLING_RETRY_DAYS); the
    # last failure makes the invoice uncollectible. Hourly keeps a retry within an hour of due.
    "invoices-dunning": {
        "task": "billing.tasks.invoices_dunning_run",
        "schedule": crontab(minute=20),
    },
    # 00:30 on the 1st (UTC), after the minute flushes have drained the old month: flush once
    # more, then draft, issue and charge last month's invoices. The 06:30 run is the safety
    # net for a run that crashed or found Redis down; a repeat changes nothing.
    "month-close": {
        "task": "billing.tasks.month_close",
        "schedule": crontab(minute=30, hour="0,6", day_of_month=1),
    },
    # Hourly at :01: customers whose move to their plan's current terms (scheduled by staff for
    # 00:00 on the 1st) has come take those terms, so the API enforces them before the 00:05
    # spend-cap refresh; the hourly repeat catches a missed run.
    "terms-moves": {
        "task": "billing.tasks.terms_moves_apply",
        "schedule": crontab(minute=1),
    },
    # Hourly: remind trials ending within 3 days (once each) and end the expired ones.
    "trials": {
        "task": "billing.tasks.trials_run",
        "schedule": crontab(minute=10),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # The Stripe SDK logs every request at INFO; our gateway logs the failures that matter.
    "loggers": {"django.db.backends": {"level": "INFO"}, "stripe": {"level": "WARNING"}},
}

# Security. Everything here is on by default when DEBUG=false; `make run` and the tests serve
# plain HTTP on 127.0.0.1 and say so with SECURE_HTTPS=false.
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("Set SECRET_KEY: the development key is refused when DEBUG is false.")
# The site is reached over HTTPS: redirect plain HTTP, send HSTS, keep cookies off plain HTTP.
SECURE_HTTPS = env.bool("SECURE_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SECURE_HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if SECURE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_HTTPS)
# Behind a TLS-terminating proxy that overwrites the header, e.g.
# SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https. Never set it for a proxy that passes the
# client's own header through: the client could then claim HTTPS. (gunicorn already trusts
# X-Forwarded-Proto from --forwarded-allow-ips, 127.0.0.1 by default.)
SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER", default=[])) or None
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True

# Content-Security-Policy (django-csp). Scripts only from our origin and Stripe.js (or the
# local Stripe mock at STRIPE_JS_URL); inline scripts need the per-request nonce:
# <script nonce="{{ request.csp_nonce }}">. Inline styles stay allowed: Swagger UI and a few
# width bars use them, and a style runs no script.
_stripe_js = urlsplit(STRIPE_JS_URL)
_stripe_js_origin = f"{_stripe_js.scheme}://{_stripe_js.netloc}" if _stripe_js.netloc else ""
_STRIPE_ORIGINS = list(dict.fromkeys(filter(None, ["https://js.stripe.com", _stripe_js_origin])))
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE, *_STRIPE_ORIGINS],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", "https://*.stripe.com"],
        "connect-src": [SELF, "https://api.stripe.com", *_STRIPE_ORIGINS],
        "frame-src": ["https://hooks.stripe.com", *_STRIPE_ORIGINS],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
