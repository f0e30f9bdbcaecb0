-- The daily GPU budgets (20261128130000_usage_and_budgets.sql) were checked on
-- generations and design previews only. A clone (the recording is checked, and
-- transcribed when no transcript was given) and a transcription also run on the
-- engine and record their engine seconds, and both are free: past the budget an
-- account, or any number of anonymous ones, could keep spending the service's engine
-- time on them. The same BEFORE INSERT check now stops them. Saving a designed voice
-- runs no engine and is not stopped. Triggers fire in name order, so these run after
-- each table's own insert trigger has settled user_id.

create trigger voices_zz_budget_before_insert before insert on public.voices
  for each row when (new.design_preview_id is null)
  execute function private.enforce_daily_budget();
create trigger transcriptions_zz_budget_before_insert before insert on public.transcriptions
  for each row execute function private.enforce_daily_budget();
