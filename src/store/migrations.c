/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The schema migrations. Each entry is applied once, in order, inside one transaction; an
 * applied entry is never edited again (a change is a new entry). docs/schema.md is the reader's
 * version of what these build; keep the two in step. Limits on text columns are the sizes of the
 * fixed buffers in pgstore.h's row structs, so a row read back always fits.
 */
#include "store/migrations.h"

#include "core/macro.h"

static const char *const schema_v1[] = {
    /* ---- instances ------------------------------------------------------------------ */
    "CREATE TABLE instances (\n"
    "  id text PRIMARY KEY\n"
    "    CONSTRAINT instances_id_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$'),\n"
    "  host text CONSTRAINT instances_host_check CHECK (host ~ '^[^[:space:]]{1,253}$'),\n"
    "  port integer NOT NULL DEFAULT 6379\n"
    "    CONSTRAINT instances_port_check CHECK (port BETWEEN 1 AND 65535),\n"
    "  pod_namespace text CONSTRAINT instances_pod_namespace_check\n"
    "    CHECK (pod_namespace ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),\n"
    "  pod_name text CONSTRAINT instances_pod_name_check\n"
    "    CHECK (pod_name ~ '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$'),\n"
    "  username text CONSTRAINT instances_username_check\n"
    "    CHECK (length(username) BETWEEN 1 AND 128),\n"
    "  password text CONSTRAINT instances_password_check\n"
    "    CHECK (length(password) BETWEEN 1 AND 512),\n"
    "  password_secret_namespace text CONSTRAINT instances_password_secret_namespace_check\n"
    "    CHECK (password_secret_namespace ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),\n"
    "  password_secret_name text CONSTRAINT instances_password_secret_name_check\n"
    "    CHECK (password_secret_name ~ '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$'),\n"
    "  password_secret_key text CONSTRAINT instances_password_secret_key_check\n"
    "    CHECK (password_secret_key ~ '^[-._a-zA-Z0-9]{1,253}$'),\n"
    "  pool text NOT NULL CONSTRAINT instances_pool_check\n"
    "    CHECK (pool ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),\n"
    "  enabled boolean NOT NULL DEFAULT true,\n"
    "  write_rate_bytes_s double precision CONSTRAINT instances_write_rate_check\n"
    "    CHECK (write_rate_bytes_s > 0),\n"
    "  fork_ms_per_gb double precision CONSTRAINT instances_fork_ms_per_gb_check\n"
    "    CHECK (fork_ms_per_gb >= 0),\n"
    "  estimate_samples integer NOT NULL DEFAULT 0\n"
    "    CONSTRAINT instances_estimate_samples_check CHECK (estimate_samples >= 0),\n"
    "  redis_version text CONSTRAINT instances_redis_version_check\n"
    "    CHECK (length(redis_version) <= 64),\n"
    "  can_bgsave boolean,\n"
    "  can_bgrewriteaof boolean,\n"
    "  can_config boolean,\n"
    "  save_disabled boolean,\n"
    "  capabilities_at timestamptz,\n"
    "  invalid_reason text CONSTRAINT instances_invalid_reason_check\n"
    "    CHECK (length(invalid_reason) BETWEEN 1 AND 512),\n"
    "  invalid_since timestamptz,\n"
    "  created_at timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  CONSTRAINT instances_address_check\n"
    "    CHECK ((host IS NOT NULL) <> (pod_namespace IS NOT NULL OR pod_name IS NOT NULL)),\n"
    "  CONSTRAINT instances_pod_check CHECK ((pod_namespace IS NULL) = (pod_name IS NULL)),\n"
    "  CONSTRAINT instances_password_secret_check\n"
    "    CHECK ((password_secret_namespace IS NULL) = (password_secret_name IS NULL)\n"
    "       AND (password_secret_name IS NULL) = (password_secret_key IS NULL)),\n"
    "  CONSTRAINT instances_password_source_check\n"
    "    CHECK (password IS NULL OR password_secret_name IS NULL)\n"
    ");\n"
    "CREATE INDEX instances_pool_idx ON instances (pool);\n"

    ,
    /* ---- tasks ---------------------------------------------------------------------- */
    "CREATE TABLE tasks (\n"
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY\n"
    "    CONSTRAINT tasks_id_check CHECK (id > 0),\n"
    "  instance_id text NOT NULL\n"
    "    CONSTRAINT tasks_instance_id_fkey REFERENCES instances (id)\n"
    "    ON DELETE CASCADE ON UPDATE CASCADE,\n"
    "  action text NOT NULL DEFAULT 'bgsave'\n"
    "    CONSTRAINT tasks_action_check CHECK (action IN ('bgsave', 'bgrewriteaof')),\n"
    "  schedule text NOT NULL CONSTRAINT tasks_schedule_check\n"
    "    CHECK (length(schedule) <= 128\n"
    "       AND schedule ~ '^[^[:space:]]+([[:space:]]+[^[:space:]]+){4,5}$'),\n"
    "  enabled boolean NOT NULL DEFAULT true,\n"
    "  misfire_policy text NOT NULL DEFAULT 'run_once' CONSTRAINT tasks_misfire_policy_check\n"
    "    CHECK (misfire_policy IN ('run_once', 'skip')),\n"
    "  starting_deadline_s integer NOT NULL DEFAULT 600\n"
    "    CONSTRAINT tasks_starting_deadline_check CHECK (starting_deadline_s BETWEEN 0 AND "
    "86400),\n"
    "  description text NOT NULL DEFAULT ''\n"
    "    CONSTRAINT tasks_description_check CHECK (length(description) <= 1024),\n"
    "  invalid_reason text CONSTRAINT tasks_invalid_reason_check\n"
    "    CHECK (length(invalid_reason) BETWEEN 1 AND 512),\n"
    "  invalid_since timestamptz,\n"
    "  created_at timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX tasks_instance_id_idx ON tasks (instance_id);\n"

    ,
    /* ---- the fencing epoch ---------------------------------------------------------- */
    "CREATE TABLE leader_epoch (\n"
    "  id smallint PRIMARY KEY DEFAULT 1 CONSTRAINT leader_epoch_single_row CHECK (id = 1),\n"
    "  epoch bigint NOT NULL CONSTRAINT leader_epoch_epoch_check CHECK (epoch >= 0),\n"
    "  leader_identity text,\n"
    "  acquired_at timestamptz\n"
    ");\n"
    "INSERT INTO leader_epoch (id, epoch) VALUES (1, 0);\n"

    ,
    /* ---- nightly passes ------------------------------------------------------------- */
    "CREATE TABLE passes (\n"
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "  pass_date date NOT NULL,\n"
    "  state text NOT NULL DEFAULT 'running' CONSTRAINT passes_state_check\n"
    "    CHECK (state IN ('running', 'paused', 'finished', 'aborted')),\n"
    "  total integer NOT NULL DEFAULT 0,\n"
    "  done integer NOT NULL DEFAULT 0,\n"
    "  failed integer NOT NULL DEFAULT 0,\n"
    "  skipped integer NOT NULL DEFAULT 0,\n"
    "  epoch bigint NOT NULL CONSTRAINT passes_epoch_check CHECK (epoch > 0),\n"
    "  leader_identity text NOT NULL,\n"
    "  started_at timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  finished_at timestamptz,\n"
    "  eta timestamptz,\n"
    "  CONSTRAINT passes_totals_check CHECK (total >= 0 AND done >= 0 AND failed >= 0\n"
    "    AND skipped >= 0 AND done + failed + skipped <= total),\n"
    "  CONSTRAINT passes_finished_check\n"
    "    CHECK ((state IN ('finished', 'aborted')) = (finished_at IS NOT NULL))\n"
    ");\n"
    "CREATE INDEX passes_date_idx ON passes (pass_date, id);\n"

    ,
    /* ---- runs ----------------------------------------------------------------------- */
    "CREATE TABLE runs (\n"
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "  task_id bigint CONSTRAINT runs_task_id_fkey REFERENCES tasks (id) ON DELETE SET NULL,\n"
    "  instance_id text NOT NULL CONSTRAINT runs_instance_id_fkey REFERENCES instances (id)\n"
    "    ON DELETE CASCADE ON UPDATE CASCADE,\n"
    "  pass_id bigint CONSTRAINT runs_pass_id_fkey REFERENCES passes (id) ON DELETE SET NULL,\n"
    "  kind text NOT NULL CONSTRAINT runs_kind_check\n"
    "    CHECK (kind IN ('scheduled', 'nightly', 'manual', 'persist')),\n"
    "  action text NOT NULL DEFAULT 'bgsave'\n"
    "    CONSTRAINT runs_action_check CHECK (action IN ('bgsave', 'bgrewriteaof')),\n"
    "  scheduled_for timestamptz,\n"
    "  state text NOT NULL DEFAULT 'claimed' CONSTRAINT runs_state_check\n"
    "    CHECK (state IN ('claimed', 'running', 'succeeded', 'failed', 'skipped', 'missed',\n"
    "                     'timed_out')),\n"
    "  epoch bigint NOT NULL CONSTRAINT runs_epoch_check CHECK (epoch > 0),\n"
    "  leader_identity text NOT NULL\n"
    "    CONSTRAINT runs_leader_identity_check CHECK (length(leader_identity) BETWEEN 1 AND 253),\n"
    "  request_id text\n"
    "    CONSTRAINT runs_request_id_check CHECK (length(request_id) BETWEEN 1 AND 128),\n"
    "  claimed_at timestamptz NOT NULL DEFAULT now(),\n"
    "  planned_start timestamptz,\n"
    "  started_at timestamptz,\n"
    "  finished_at timestamptz,\n"
    "  used_memory bigint CONSTRAINT runs_used_memory_check CHECK (used_memory >= 0),\n"
    "  estimated_duration_ms bigint\n"
    "    CONSTRAINT runs_estimated_duration_check CHECK (estimated_duration_ms >= 0),\n"
    "  actual_duration_ms bigint\n"
    "    CONSTRAINT runs_actual_duration_check CHECK (actual_duration_ms >= 0),\n"
    "  rdb_saves_before bigint CONSTRAINT runs_rdb_saves_before_check CHECK (rdb_saves_before >= "
    "0),\n"
    "  rdb_saves_after bigint CONSTRAINT runs_rdb_saves_after_check CHECK (rdb_saves_after >= 0),\n"
    "  lastsave_before bigint CONSTRAINT runs_lastsave_before_check CHECK (lastsave_before >= 0),\n"
    "  lastsave_after bigint CONSTRAINT runs_lastsave_after_check CHECK (lastsave_after >= 0),\n"
    "  error text CONSTRAINT runs_error_check CHECK (length(error) <= 1024),\n"
    "  CONSTRAINT runs_slot_key UNIQUE (task_id, scheduled_for),\n"
    "  CONSTRAINT runs_request_key UNIQUE (request_id, instance_id),\n"
    "  CONSTRAINT runs_scheduled_check\n"
    "    CHECK (kind <> 'scheduled' OR scheduled_for IS NOT NULL),\n"
    "  CONSTRAINT runs_task_kind_check CHECK (kind IN ('scheduled', 'manual') OR task_id IS "
    "NULL),\n"
    "  CONSTRAINT runs_request_kind_check\n"
    "    CHECK (request_id IS NULL OR kind IN ('persist', 'manual')),\n"
    "  CONSTRAINT runs_finished_check\n"
    "    CHECK ((state IN ('claimed', 'running')) = (finished_at IS NULL)),\n"
    "  CONSTRAINT runs_started_check CHECK (state <> 'running' OR started_at IS NOT NULL),\n"
    "  CONSTRAINT runs_order_check\n"
    "    CHECK (finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at)\n"
    ");\n",
    /* Slots of an hour already claimed (the master controller, catch-up). */
    "CREATE INDEX runs_scheduled_for_idx ON runs (scheduled_for) WHERE kind = 'scheduled';\n"
    /* Runs left claimed or running by an older epoch (reconciliation). */
    "CREATE INDEX runs_open_idx ON runs (epoch) WHERE state IN ('claimed', 'running');\n"
    /* Last successful save per instance (skip-if-saved, the API). */
    "CREATE INDEX runs_last_success_idx ON runs (instance_id, finished_at DESC)\n"
    "  WHERE state = 'succeeded';\n"
    /* Keyset paging per instance and per task; the FK checks of deletes. */
    "CREATE INDEX runs_instance_idx ON runs (instance_id, id);\n"
    "CREATE INDEX runs_task_idx ON runs (task_id, id);\n"
    "CREATE INDEX runs_pass_idx ON runs (pass_id) WHERE pass_id IS NOT NULL;\n"
    /* Retention. */
    "CREATE INDEX runs_claimed_at_idx ON runs (claimed_at);\n"

    ,
    /* ---- rows persistd cannot use ---------------------------------------------------- */
    "CREATE VIEW unusable_rows AS\n"
    "  SELECT 'instance'::text AS kind, id AS id, invalid_reason AS reason,\n"
    "         invalid_since AS since\n"
    "    FROM instances WHERE invalid_reason IS NOT NULL\n"
    "  UNION ALL\n"
    "  SELECT 'task'::text, id::text, invalid_reason, invalid_since\n"
    "    FROM tasks WHERE invalid_reason IS NOT NULL;\n"

    ,
    /* ---- triggers: updated_at, clearing stale verdicts, change notifications ---------- */
    "CREATE FUNCTION persistd_touch_instance() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  NEW.updated_at := now();\n"
    "  IF (NEW.host, NEW.port, NEW.pod_namespace, NEW.pod_name, NEW.password_secret_namespace,\n"
    "      NEW.password_secret_name, NEW.password_secret_key)\n"
    "     IS DISTINCT FROM\n"
    "     (OLD.host, OLD.port, OLD.pod_namespace, OLD.pod_name, OLD.password_secret_namespace,\n"
    "      OLD.password_secret_name, OLD.password_secret_key)\n"
    "     AND NEW.invalid_reason IS NOT DISTINCT FROM OLD.invalid_reason THEN\n"
    "    NEW.invalid_reason := NULL;\n"
    "    NEW.invalid_since := NULL;\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END $$;\n"
    "CREATE TRIGGER instances_touch BEFORE UPDATE ON instances\n"
    "  FOR EACH ROW EXECUTE FUNCTION persistd_touch_instance();\n"
    "CREATE FUNCTION persistd_touch_task() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  NEW.updated_at := now();\n"
    "  IF (NEW.schedule, NEW.action, NEW.instance_id)\n"
    "     IS DISTINCT FROM (OLD.schedule, OLD.action, OLD.instance_id)\n"
    "     AND NEW.invalid_reason IS NOT DISTINCT FROM OLD.invalid_reason THEN\n"
    "    NEW.invalid_reason := NULL;\n"
    "    NEW.invalid_since := NULL;\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END $$;\n"
    "CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks\n"
    "  FOR EACH ROW EXECUTE FUNCTION persistd_touch_task();\n",
    /*
     * One notification per changed row: "<table> <INSERT|UPDATE|DELETE> <id>". The trigger's
     * arguments name the columns persistd itself writes (estimates, capabilities, verdicts):
     * an UPDATE touching only those is not a definition change and notifies nobody, so the
     * leader's own writes never loop back to it.
     */
    "CREATE FUNCTION persistd_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  IF TG_OP = 'DELETE' THEN\n"
    "    PERFORM pg_notify('persistd_changes', TG_TABLE_NAME || ' DELETE ' || OLD.id::text);\n"
    "  ELSIF TG_OP = 'INSERT' THEN\n"
    "    PERFORM pg_notify('persistd_changes', TG_TABLE_NAME || ' INSERT ' || NEW.id::text);\n"
    "  ELSIF (to_jsonb(NEW) - TG_ARGV) IS DISTINCT FROM (to_jsonb(OLD) - TG_ARGV) THEN\n"
    "    IF NEW.id IS DISTINCT FROM OLD.id THEN\n"
    "      PERFORM pg_notify('persistd_changes', TG_TABLE_NAME || ' DELETE ' || OLD.id::text);\n"
    "      PERFORM pg_notify('persistd_changes', TG_TABLE_NAME || ' INSERT ' || NEW.id::text);\n"
    "    ELSE\n"
    "      PERFORM pg_notify('persistd_changes', TG_TABLE_NAME || ' UPDATE ' || NEW.id::text);\n"
    "    END IF;\n"
    "  END IF;\n"
    "  RETURN NULL;\n"
    "END $$;\n"
    "CREATE FUNCTION persistd_notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  PERFORM pg_notify('persistd_changes', TG_TABLE_NAME || ' TRUNCATE');\n"
    "  RETURN NULL;\n"
    "END $$;\n",
    "CREATE TRIGGER instances_notify AFTER INSERT OR UPDATE OR DELETE ON instances\n"
    "  FOR EACH ROW EXECUTE FUNCTION persistd_notify_change(\n"
    "    'updated_at', 'write_rate_bytes_s', 'fork_ms_per_gb', 'estimate_samples',\n"
    "    'redis_version', 'can_bgsave', 'can_bgrewriteaof', 'can_config', 'save_disabled',\n"
    "    'capabilities_at', 'invalid_reason', 'invalid_since');\n"
    "CREATE TRIGGER instances_notify_truncate AFTER TRUNCATE ON instances\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION persistd_notify_truncate();\n"
    "CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE OR DELETE ON tasks\n"
    "  FOR EACH ROW EXECUTE FUNCTION persistd_notify_change(\n"
    "    'updated_at', 'invalid_reason', 'invalid_since');\n"
    "CREATE TRIGGER tasks_notify_truncate AFTER TRUNCATE ON tasks\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION persistd_notify_truncate();\n",
    NULL,
};

const struct pgstore_migration pgstore_migrations[] = {
    {.version = 1, .name = "instances, tasks, runs, leader_epoch, passes", .sql = schema_v1},
};
const size_t pgstore_migrations_count = ELEMENTSOF(pgstore_migrations);

int pgstore_schema_version(void)
{
        return pgstore_migrations[pgstore_migrations_count - 1].version;
}
