from django.db import migrations, models


class Migration(migrations.Migration):
    """A rerun supersedes stage records instead of deleting them: one current record per (run, stage_id)."""

    dependencies = [
        ("django_workflow_engine", "0005_idempotency_run_and_expiry"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowstage",
            name="superseded_at",
            field=models.DateTimeField(
                blank=True, help_text="When a rerun replaced this record (NULL: the current generation).", null=True
            ),
        ),
        migrations.AddField(
            model_name="workflowstage",
            name="superseded_by",
            field=models.CharField(
                blank=True, help_text="Who asked for the rerun that replaced this record.", max_length=200, null=True
            ),
        ),
        migrations.RemoveConstraint(
            model_name="workflowstage",
            name="dwe_stage_run_stage_uniq",
        ),
        migrations.AddConstraint(
            model_name="workflowstage",
            constraint=models.UniqueConstraint(
                condition=models.Q(("superseded_at__isnull", True)),
                fields=("run", "stage_id"),
                name="dwe_stage_run_stage_uniq",
            ),
        ),
    ]
