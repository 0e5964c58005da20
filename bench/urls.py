from django.urls import path

from bench import floor
from campaign.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("bench/floor/<int:organization_id>/<int:configuration_id>", floor.insert_event),
    *product_urlpatterns,
]
