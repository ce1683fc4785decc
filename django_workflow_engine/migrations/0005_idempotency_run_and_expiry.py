from django.db import migrations, models


def fill_run_ids(apps, schema_editor):
    """Give keys completed before the column existed their run id, so deleting the run deletes them too."""
    IdempotencyKey = apps.get_model("django_workflow_engine", "IdempotencyKey")
    keys = IdempotencyKey.objects.using(schema_editor.connection.alias)
    batch = []
    for key in keys.filter(run_id__isnull=True).only("pk", "result").iterator(chunk_size=1000):
        run_id = key.result.get("run_id") if isinstance(key.result, dict) else None
        if isinstance(run_id, str) and len(run_id) <= 32:
            key.run_id = run_id
            batch.append(key)
        if len(batch) >= 1000:
            keys.bulk_update(batch, ["run_id"])
            batch = []
    if batch:
        keys.bulk_update(batch, ["run_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("django_workflow_engine", "0004_aicall_workflow_and_stage"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="run_id",
            field=models.CharField(
                blank=True,
                help_text="The run the command created or acted on, once completed.",
                max_length=32,
                null=True,
            ),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(fields=["created_at"], name="dwe_idem_created_idx"),
        ),
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(
                condition=models.Q(("run_id__isnull", False)), fields=["run_id"], name="dwe_idem_run_idx"
            ),
        ),
        # Events carry their command's idempotency key (up to 255 characters) as causation id.
        migrations.AlterField(
            model_name="outboxevent",
            name="causation_id",
            field=models.CharField(help_text="The idempotency key of the command, or a UUID.", max_length=255),
        ),
        migrations.RunPython(fill_run_ids, migrations.RunPython.noop, elidable=True),
    ]
