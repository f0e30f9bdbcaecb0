-- The retention schedules exist in pg_cron with the schedules the migration names.
-- pg_cron keeps its jobs in one database (cron.database_name, `postgres`), so this
-- file runs there: `supabase test db` runs it on Supabase, and scripts/test.sh runs it
-- against the project cluster's `postgres` database after migrating it.
begin;
create extension if not exists pgtap with schema extensions;
select extensions.plan(5);

select extensions.has_extension('pg_cron', 'pg_cron is installed where the jobs live');
select extensions.results_eq(
  $$ select jobname::text collate "default", schedule, command from cron.job
     where jobname like 'utter-%' order by jobname $$,
  $$ select job_name, schedule, command from private.retention_schedules() order by job_name $$,
  'each retention schedule is a pg_cron job with its schedule and command');
select extensions.results_eq(
  $$ select jobname::text collate "default", schedule from cron.job where jobname like 'utter-%' order by jobname $$,
  $$ values ('utter-prune-broadcasts', '7 * * * *'), ('utter-prune-queue-archives', '17 3 * * *'),
            ('utter-sweep', '*/15 * * * *') $$,
  'broadcasts are pruned hourly, queue archives daily at 03:17 UTC, abandoned uploads every 15 minutes');
select extensions.ok(
  (select bool_and(active) from cron.job where jobname like 'utter-%'),
  'every retention job is active');
select extensions.lives_ok(
  $$ select private.prune_queue_archives(); select private.prune_broadcasts(); select private.sweep() $$,
  'each job''s command runs in this database');

select * from extensions.finish();
rollback;
