import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Load the offline city index in each web worker before it takes traffic.
from metering.products.geocode import geocode_warm  # noqa: E402

geocode_warm()
