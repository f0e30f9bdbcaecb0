-- The daily GPU budgets (20261128130000_usage_and_budgets.sql) were checked on
-- generations and design previews only, and clones were left out because their
-- validation ran on the listener's CPU. Since transcription landed, a transcription
-- and a clone inserted without a transcript run speech recognition on the engine,
-- record their engine seconds, and are free: past the budget an account, or any
-- number of anonymous ones, could keep spending the service's engine time on them.
-- The same BEFORE INSERT check now stops them. A clone with a typed transcript and a
-- saved designed voice run no engine and are not stopped. Triggers fire in name
-- order, so these run after each table's own insert triggers have settled user_id
-- and trimmed the transcript.

create trigger voices_zz_budget_before_insert before insert on public.voices
  for each row when (new.design_preview_id is null and new.reference_transcript is null)
  execute function private.enforce_daily_budget();
create trigger transcriptions_zz_budget_before_insert before insert on public.transcriptions
  for each row execute function private.enforce_daily_budget();
