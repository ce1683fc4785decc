"""Fewer indexes on the rows every stage writes (each index costs an entry and a WAL record per insert and per
non-HOT update).

* ``run`` on jobs and stages loses its own index (and, on PostgreSQL, its ``varchar_pattern_ops`` twin): the
  composite indexes ``dwe_job_run_stage_idx`` and ``dwe_stage_activity_idx`` lead with the run.
* On PostgreSQL the ``varchar_pattern_ops`` ("_like") twins of the run, stage and job primary keys go: they only
  serve ``LIKE 'prefix%'`` on ids, which nothing does. Django drops such an index with ``IF EXISTS`` when a later
  migration alters the field, so their absence is safe.
"""

from django.db import migrations, models

# The models whose primary key's "_like" twin is dropped.
_LIKE_TWINS = ("workflowrun", "workflowstage", "workflowjob")


def _like_index(schema_editor, model):
    field = model._meta.pk
    return schema_editor._create_index_name(model._meta.db_table, [field.column], suffix="_like")


def drop_like_twins(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in _LIKE_TWINS:
        model = apps.get_model("django_workflow_engine", name)
        schema_editor.execute(schema_editor._delete_index_sql(model, _like_index(schema_editor, model)))


def restore_like_twins(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in _LIKE_TWINS:
        model = apps.get_model("django_workflow_engine", name)
        schema_editor.execute(schema_editor._create_like_index_sql(model, model._meta.pk))


class Migration(migrations.Migration):
    dependencies = [
        ("django_workflow_engine", "0016_map_items"),
    ]

    operations = [
        migrations.AlterField(
            model_name="workflowjob",
            name="run",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="jobs",
                to="django_workflow_engine.workflowrun",
            ),
        ),
        migrations.AlterField(
            model_name="workflowstage",
            name="run",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="stages",
                to="django_workflow_engine.workflowrun",
            ),
        ),
        migrations.RunPython(drop_like_twins, restore_like_twins, elidable=False),
    ]
