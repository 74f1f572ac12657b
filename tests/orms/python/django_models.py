"""The invoices table as a Django model (an app's models.py); imported once
django_recipe.configure() has run."""

from django.db import models


class Invoice(models.Model):
    tenant_id = models.UUIDField()
    amount = models.IntegerField()
    note = models.TextField(null=True)

    class Meta:
        app_label = "jwt_rls_orms"  # no INSTALLED_APPS entry needed for an unmanaged model
        db_table = "invoices"
        managed = False
