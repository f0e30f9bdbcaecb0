-- The rules behind the voice library, credit activity, rate card, limits and input
-- checks. Every existing function this migration redefines is redefined here and
-- nowhere else:
--   private.signup_credits, private.max_unfinished_tasks, private.task_cost,
--   private.handle_new_user, private.open_task, private.check_text_length,
--   private.before_design_preview_insert, private.before_generation_insert,
--   private.before_voice_insert, private.before_task_update, private.broadcast_record.
-- New trigger functions stand beside the existing triggers rather than inside them.

-- Settings and prices, read from their tables -----------------------------------

create or replace function private.signup_credits() returns integer
language plpgsql stable set search_path = '' as $$
begin
  return (select s.signup_credits from private.settings s);
end
$$;

create or replace function private.max_unfinished_tasks() returns integer
language plpgsql stable set search_path = '' as $$
begin
  return (select s.max_unfinished_tasks from private.settings s);
end
$$;

create or replace function private.task_cost(task_type text, text_length integer) returns integer
language plpgsql stable set search_path = '' as $$
declare
  rate public.rate_card;
begin
  select * into rate from public.rate_card r where r.task_type = task_cost.task_type;
  if not found then
    raise exception 'no rate card entry for task type %', task_type;
  end if;
  if rate.per_characters is null then
    return rate.credits;
  end if;
  return rate.credits * greatest(1, ceil(coalesce(text_length, 0)::numeric / rate.per_characters)::integer);
end
$$;

-- Text a person typed: trimmed of whitespace and invisible characters at both ends;
-- text with nothing visible in it is empty. Characters inside the text are kept
-- (zero-width joiners matter in emoji and some scripts).
create function private.clean_text(value text) returns text
language plpgsql immutable set search_path = '' as $$
begin
  return regexp_replace(value,
    '^[\s\u0085\u00a0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]+'
    '|[\s\u0085\u00a0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]+$', '', 'g');
end
$$;

create or replace function private.check_text_length(what text, value text, max_length integer) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if value is null or char_length(private.clean_text(value)) = 0 then
    perform private.invalid(format('%s must not be empty', what),
      'Whitespace and invisible characters alone do not count.');
  elsif char_length(value) > max_length then
    perform private.invalid(format('%s is %s characters long; the limit is %s',
                                   what, char_length(value), max_length));
  end if;
end
$$;

-- Credits ---------------------------------------------------------------------

-- Anonymous sign-ups get settings.anonymous_signup_credits (0 unless an operator
-- changes it), everyone else settings.signup_credits.
create or replace function private.handle_new_user() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  grant_amount integer;
begin
  select case when new.is_anonymous then s.anonymous_signup_credits else s.signup_credits end
  into grant_amount from private.settings s;
  insert into public.profiles (id, credits) values (new.id, grant_amount);
  if grant_amount > 0 then
    insert into private.credit_ledger (user_id, delta, reason) values (new.id, grant_amount, 'signup_grant');
  end if;
  return new;
end
$$;

-- An anonymous account that becomes a permanent one (an email or provider linked)
-- gets the sign-up grant then, unless it had one already.
create function private.handle_user_made_permanent() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  grant_amount integer := private.signup_credits();
  granted integer;
begin
  if grant_amount = 0 then
    return null;
  end if;
  insert into private.credit_ledger (user_id, delta, reason)
  values (new.id, grant_amount, 'signup_grant')
  on conflict (user_id) where reason = 'signup_grant' do nothing;
  get diagnostics granted = row_count;
  if granted = 1 then
    update public.profiles set credits = credits + grant_amount, updated_at = now() where id = new.id;
  end if;
  return null;
end
$$;
create trigger on_auth_user_made_permanent after update of is_anonymous on auth.users
  for each row when (old.is_anonymous and not new.is_anonymous)
  execute function private.handle_user_made_permanent();

-- Each ledger row records the balance it leaves. The profile's lock orders one user's
-- rows, so the newest row (by created_at, taken after the lock) holds the balance
-- before this one.
create function private.before_ledger_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform 1 from public.profiles p where p.id = new.user_id for update;
  new.created_at := clock_timestamp();
  new.balance_after := coalesce(
    (select l.balance_after from private.credit_ledger l
     where l.user_id = new.user_id order by l.created_at desc, l.id desc limit 1), 0) + new.delta;
  return new;
end
$$;
create trigger credit_ledger_before_insert before insert on private.credit_ledger
  for each row execute function private.before_ledger_insert();

-- The credit activity a client reads (public.credit_activity), one row as JSON.
create function private.credit_activity_record(entry private.credit_ledger) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
begin
  return jsonb_build_object(
    'id', entry.id, 'created_at', entry.created_at, 'reason', entry.reason,
    'amount', entry.delta, 'balance_after', entry.balance_after, 'task_id', entry.task_id,
    'task_type', (select t.type from public.tasks t where t.id = entry.task_id));
end
$$;

create function private.broadcast_credit_activity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform realtime.send(
    jsonb_build_object('operation', 'INSERT', 'schema', 'public', 'table', 'credit_activity',
                       'record', private.credit_activity_record(new)),
    'INSERT', 'user:' || new.user_id, true);
  return null;
end
$$;
-- Not the sign-up grant: no client can be listening before its account exists (an
-- anonymous account made permanent sees its grant as the profile's UPDATE).
create trigger broadcast_credit_activity after insert on private.credit_ledger
  for each row when (new.reason <> 'signup_grant')
  execute function private.broadcast_credit_activity();

-- Request rate limits -----------------------------------------------------------

-- '1 minute', '10 minutes', '1 hour', '90 seconds': a window as a person reads it.
create function private.duration_words(span interval) returns text
language plpgsql immutable set search_path = '' as $$
declare
  seconds bigint := extract(epoch from span)::bigint;
  amount bigint;
  unit text;
begin
  if seconds % 3600 = 0 then
    amount := seconds / 3600; unit := 'hour';
  elsif seconds % 60 = 0 then
    amount := seconds / 60; unit := 'minute';
  else
    amount := seconds; unit := 'second';
  end if;
  return amount || ' ' || unit || case when amount = 1 then '' else 's' end;
end
$$;

-- Counts one request to start work in the current fixed window of its task type and
-- refuses it past the limit: SQLSTATE PGRST, which PostgREST turns into HTTP 429 with
-- the JSON error in the message and a Retry-After header. A refused insert rolls back,
-- its count included: only accepted work is counted.
create function private.count_request(owner uuid, kind text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  rule private.request_limits;
  window_begins timestamptz;
  counted integer;
  retry_after integer;
  label text := case kind when 'generate' then 'generation' else replace(kind, '_', ' ') end;
begin
  select * into rule from private.request_limits r where r.task_type = kind;
  if not found then
    return;
  end if;
  window_begins := date_bin(rule.per_window, now(), timestamptz '2000-01-01 00:00:00+00');
  insert into private.request_counts as c (user_id, task_type, window_start, requests)
  values (owner, kind, window_begins, 1)
  on conflict on constraint request_counts_pkey do update set requests = c.requests + 1
  returning c.requests into counted;
  if counted > rule.max_requests then
    retry_after := greatest(1, ceil(extract(epoch from window_begins + rule.per_window - now())))::integer;
    raise exception using errcode = 'PGRST',
      message = jsonb_build_object(
        'code', 'UT429',
        'message', format('too many %s requests: the limit is %s per %s', label, rule.max_requests,
                          private.duration_words(rule.per_window)),
        'details', null,
        'hint', format('Try again in %s seconds.', retry_after))::text,
      detail = jsonb_build_object('status', 429,
                                  'headers', jsonb_build_object('Retry-After', retry_after::text))::text;
  end if;
end
$$;

-- Charges the user, checks the rate limit, the tier's concurrent-job cap and the
-- unfinished-task cap, creates the task and enqueues its message (ids only, never
-- user text), all in the caller's transaction.
create or replace function private.open_task(
  owner uuid,
  task_type text,
  subject_id uuid,
  text_length integer default 0
) returns uuid
language plpgsql security definer set search_path = '' as $$
declare
  balance integer;
  user_tier text;
  concurrent_cap integer;
  running integer;
  unfinished integer;
  price integer := private.task_cost(task_type, text_length);
  new_task_id uuid := gen_random_uuid();
  new_msg_id bigint;
begin
  -- The profile row lock serialises one user's concurrent inserts, so neither the
  -- balance, the counters nor the caps can be raced past.
  select p.credits, p.tier, l.max_concurrent_jobs into balance, user_tier, concurrent_cap
  from public.profiles p join public.tier_limits l on l.tier = p.tier
  where p.id = owner for update of p;
  if not found then
    raise exception using errcode = '22023', message = 'no profile for user ' || owner;
  end if;

  perform private.count_request(owner, task_type);

  select count(*), count(*) filter (where t.type in ('generate', 'design_preview'))
  into unfinished, running
  from public.tasks t
  where t.user_id = owner and t.status in ('pending', 'processing');
  if task_type in ('generate', 'design_preview') and running >= concurrent_cap then
    raise exception using errcode = 'PT429',
      message = format('too many jobs at once: %s generations or design previews are queued or running (limit %s on the %s tier)',
                       running, concurrent_cap, user_tier),
      hint = 'Wait for one to finish or cancel one.';
  end if;
  if unfinished >= private.max_unfinished_tasks() then
    raise exception using errcode = 'PT429',
      message = format('too many unfinished tasks: %s are queued or running (limit %s)',
                       unfinished, private.max_unfinished_tasks()),
      hint = 'Wait for one to finish or cancel one.';
  end if;

  if balance < price then
    raise exception using errcode = 'PT402',
      message = format('not enough credits: this %s costs %s and the balance is %s',
                       case task_type when 'generate' then 'generation'
                                      else replace(task_type, '_', ' ') end, price, balance);
  end if;

  new_msg_id := private.enqueue(task_type, jsonb_build_object('task_id', new_task_id, 'type', task_type));
  insert into public.tasks (id, user_id, type, cost, msg_id, generation_id, design_preview_id, voice_id)
  values (
    new_task_id, owner, task_type, price, new_msg_id,
    case when task_type = 'generate' then subject_id end,
    case when task_type = 'design_preview' then subject_id end,
    case when task_type = 'clone' then subject_id end
  );

  if price > 0 then
    update public.profiles set credits = credits - price, updated_at = now() where id = owner;
    insert into private.credit_ledger (user_id, task_id, delta, reason)
    values (owner, new_task_id, -price, 'charge');
  end if;
  return new_task_id;
end
$$;

-- Tasks: cancel and dismiss ---------------------------------------------------------

create or replace function private.before_task_update() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  changed text[];
begin
  -- A client's dismissal: the server sets the time, only an ended task can be
  -- dismissed, and a dismissal cannot be taken back.
  if new.dismissed_at is distinct from old.dismissed_at then
    if old.dismissed_at is not null then
      new.dismissed_at := old.dismissed_at;
    elsif old.status not in ('completed', 'failed', 'cancelled') then
      raise exception using errcode = '22023',
        message = format('task %s is %s; only an ended task can be dismissed', old.id, old.status),
        hint = 'Cancel it first, or wait for it to end.';
    else
      new.dismissed_at := now();
    end if;
  end if;

  -- A client's cancel request.
  if old.cancel_requested_at is null and new.cancel_requested_at is not null
     and new.status = old.status then
    if old.status in ('completed', 'failed', 'cancelled') then
      new.cancel_requested_at := null;  -- already over: cancelling is a no-op, not an error
    else
      new.cancel_requested_at := now();
      new.status := 'cancelled';
      new.error := 'cancelled by the user';
      if old.status = 'pending' and old.msg_id is not null then
        perform pgmq.delete(old.type, old.msg_id);
      else
        perform pg_notify('utter_cancel', old.id::text);
      end if;
    end if;
  elsif old.cancel_requested_at is not null and new.cancel_requested_at is distinct from old.cancel_requested_at then
    new.cancel_requested_at := old.cancel_requested_at;  -- a cancel cannot be taken back
  end if;

  if old.status in ('completed', 'failed', 'cancelled') then
    changed := array(select n.key from jsonb_each(to_jsonb(new)) n
                     where n.value is distinct from to_jsonb(old) -> n.key and n.key <> 'updated_at');
    if cardinality(changed) = 0 then
      return null;  -- nothing to change, e.g. a repeated cancel or dismissal
    end if;
    -- Dismissed, or its generation, preview or voice was deleted (the foreign keys set
    -- null): the ended task stays as history.
    if changed <@ array['generation_id', 'design_preview_id', 'voice_id', 'dismissed_at']
       and (new.generation_id is null or new.generation_id = old.generation_id)
       and (new.design_preview_id is null or new.design_preview_id = old.design_preview_id)
       and (new.voice_id is null or new.voice_id = old.voice_id) then
      new.updated_at := now();
      return new;
    end if;
    raise exception using errcode = '22023',
      message = format('task %s already ended (%s); it cannot change', old.id, old.status);
  end if;
  if not private.task_transition_allowed(old.status, new.status) then
    raise exception using errcode = '22023',
      message = format('illegal task transition %s -> %s for task %s', old.status, new.status, old.id);
  end if;

  if new.status in ('completed', 'failed', 'cancelled') then
    new.ended_at := now();
    new.claimed_by := null;
  end if;
  if new.status = 'completed' then
    new.progress := 1;
  end if;
  new.updated_at := now();
  return new;
end
$$;

-- Inserts from the browser ----------------------------------------------------

create or replace function private.before_design_preview_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.user_id := private.inserting_user(new.user_id);
  new.instruct := private.clean_text(new.instruct);
  new.text := private.clean_text(new.text);
  perform private.check_text_length('instruct', new.instruct, 500);
  perform private.check_text_length('text', new.text, 500);
  perform private.check_language(new.language, true);
  new.status := 'pending';
  new.audio_object_key := null;
  new.duration_seconds := null;
  new.error := null;
  new.created_at := now();
  new.updated_at := now();
  return new;
end
$$;

create or replace function private.before_generation_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  voice public.voices;
  earlier public.generations;
begin
  new.user_id := private.inserting_user(new.user_id);

  if new.regenerated_from is not null then
    -- Regenerate: same voice, text and language as an earlier generation of the caller's.
    select * into earlier from public.generations g
    where g.id = new.regenerated_from and g.user_id = new.user_id;
    if not found then
      perform private.invalid(format('generation %s not found', new.regenerated_from));
    end if;
    new.voice_id := coalesce(new.voice_id, earlier.voice_id);
    new.text := coalesce(new.text, earlier.text);
    new.language := coalesce(new.language, earlier.language);
  end if;

  if new.voice_id is null then
    perform private.invalid('voice_id is required');
  end if;
  select * into voice from public.voices v where v.id = new.voice_id and v.user_id = new.user_id;
  if not found then
    perform private.invalid(format('voice %s not found', new.voice_id));
  end if;
  if voice.status <> 'ready' then
    perform private.invalid(format('voice %s is %s; it can speak once it is ready', voice.id,
      case voice.status when 'pending' then 'still being validated' else voice.status end));
  end if;
  new.text := private.clean_text(new.text);
  perform private.check_text_length('text', new.text, 5000);
  perform private.check_language(new.language, false);

  new.voice_name := voice.name;
  new.status := 'pending';
  new.audio_object_key := null;
  new.duration_seconds := null;
  new.generation_seconds := null;
  new.error := null;
  new.completed_at := null;
  new.created_at := now();
  new.updated_at := now();
  return new;
end
$$;

create or replace function private.before_voice_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  preview public.design_previews;
  expected_prefix text;
  upload_id uuid;
begin
  new.user_id := private.inserting_user(new.user_id);
  -- Refused before anything is looked up, so no answer depends on another user's data.
  if new.id is null then
    perform private.invalid('id must not be null',
      'Leave id out to let the database choose one; a clone sends the id it uploaded under.');
  end if;
  new.name := private.clean_text(new.name);
  perform private.check_text_length('name', new.name, 100);
  new.error := null;
  new.is_favorite := false;
  new.generation_count := 0;
  new.last_used_at := null;
  new.created_at := now();
  new.updated_at := now();

  if new.design_preview_id is not null then
    -- Save a designed voice: everything comes from the caller's finished preview.
    select * into preview from public.design_previews p
    where p.id = new.design_preview_id and p.user_id = new.user_id;
    if not found then
      perform private.invalid(format('design preview %s not found', new.design_preview_id));
    end if;
    if preview.status <> 'completed' then
      perform private.invalid(format('design preview %s is %s; only a completed preview can be saved',
                                     preview.id, preview.status));
    end if;
    if exists (select 1 from public.voices v where v.design_preview_id = preview.id) then
      perform private.invalid(format('design preview %s is already saved as a voice', preview.id));
    end if;
    new.source := 'designed';
    new.language := preview.language;
    new.description := preview.instruct;
    new.reference_transcript := preview.text;
    new.reference_object_key := preview.audio_object_key;
    new.normalized_object_key := preview.audio_object_key;
    new.reference_duration_seconds := preview.duration_seconds;
    new.status := 'ready';
    return new;
  end if;

  -- Clone: the reference was uploaded first, under the caller's own folder.
  new.source := 'uploaded';
  new.description := null;
  new.normalized_object_key := null;
  new.reference_duration_seconds := null;
  new.status := 'pending';
  perform private.check_language(new.language, false);
  new.reference_transcript := private.clean_text(new.reference_transcript);
  if new.reference_transcript is null or char_length(new.reference_transcript) < 10 then
    perform private.invalid('reference_transcript must be at least 10 characters',
      'The transcript is what the reference recording says, word for word.');
  end if;
  expected_prefix := new.user_id || '/' || new.id || '/reference.';
  if new.reference_object_key is null
     or left(new.reference_object_key, char_length(expected_prefix)) <> expected_prefix
     or lower(substr(new.reference_object_key, char_length(expected_prefix) + 1)) not in ('wav', 'mp3', 'm4a') then
    perform private.invalid(
      format('reference_object_key must be %s<wav|mp3|m4a>, got %L', expected_prefix, new.reference_object_key),
      'Choose the voice id first, upload to that key in bucket references, then insert the voice with the same id.');
  end if;
  select o.id into upload_id from storage.objects o
  where o.bucket_id = 'references' and o.name = new.reference_object_key;
  if not found then
    perform private.invalid(format('no uploaded reference at references/%s', new.reference_object_key),
      'Upload the recording before inserting the voice.');
  end if;
  if exists (select 1 from private.upload_sweeps s where s.object_id = upload_id) then
    perform private.invalid(
      format('the upload at references/%s expired and is being removed', new.reference_object_key),
      'Upload the recording again, then insert the voice.');
  end if;
  return new;
end
$$;

-- Voices: rename, favourite, use ------------------------------------------------------

-- A client may write only name and is_favorite (column grants); a new name is
-- checked like an inserted one.
create function private.before_voice_update() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.name is distinct from old.name then
    new.name := private.clean_text(new.name);
    perform private.check_text_length('name', new.name, 100);
  end if;
  if new.name is distinct from old.name or new.is_favorite is distinct from old.is_favorite then
    new.updated_at := now();
  end if;
  return new;
end
$$;
create trigger voices_before_update before update on public.voices
  for each row execute function private.before_voice_update();

-- Every generation started with a voice counts as a use of it.
create function private.count_voice_use() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  update public.voices v
  set generation_count = v.generation_count + 1, last_used_at = new.created_at
  where v.id = new.voice_id;
  return null;
end
$$;
create trigger generations_count_voice_use after insert on public.generations
  for each row execute function private.count_voice_use();

-- Realtime: the task record a client sees gains dismissed_at, the profile its tier --------

create or replace function private.broadcast_record(tbl text, row_data jsonb) returns jsonb
language plpgsql immutable set search_path = '' as $$
begin
  return case tbl
    when 'tasks' then jsonb_build_object(
      'id', row_data -> 'id', 'type', row_data -> 'type', 'status', row_data -> 'status',
      'progress', row_data -> 'progress', 'error', row_data -> 'error', 'cost', row_data -> 'cost',
      'attempts', row_data -> 'attempts', 'generation_id', row_data -> 'generation_id',
      'design_preview_id', row_data -> 'design_preview_id', 'voice_id', row_data -> 'voice_id',
      'cancel_requested_at', row_data -> 'cancel_requested_at',
      'dismissed_at', row_data -> 'dismissed_at', 'created_at', row_data -> 'created_at',
      'started_at', row_data -> 'started_at', 'ended_at', row_data -> 'ended_at')
    when 'profiles' then jsonb_build_object('id', row_data -> 'id', 'credits', row_data -> 'credits',
                                            'tier', row_data -> 'tier')
    else row_data - 'user_id'  -- generations, voices, design_previews hold nothing internal
  end;
end
$$;

-- Housekeeping: abandoned uploads and old counters ---------------------------------

-- Queues for removal (through the storage_cleanup job, which deletes through the
-- Storage API) every reference upload older than settings.abandoned_upload_after
-- that no voice of its uploader was made from. Returns how many it queued.
create function private.sweep_abandoned_uploads() returns integer
language plpgsql security definer set search_path = '' as $$
declare
  cutoff timestamptz := now() - (select s.abandoned_upload_after from private.settings s);
  keys text[];
begin
  with abandoned as (
    select o.id, o.name from storage.objects o
    where o.bucket_id = 'references' and o.created_at < cutoff
      and storage.filename(o.name) ~* '^reference\.'
      and cardinality(storage.foldername(o.name)) = 2
      and not exists (select 1 from public.voices v
                      where v.id = private.uuid_or_null(split_part(o.name, '/', 2))
                        and v.user_id::text = split_part(o.name, '/', 1))
      and not exists (select 1 from private.upload_sweeps s where s.object_id = o.id)
    order by o.created_at
    limit 1000
  ), queued as (
    insert into private.upload_sweeps (object_id, bucket, object_key)
    select a.id, 'references', a.name from abandoned a
    returning object_key
  )
  select array_agg(q.object_key order by q.object_key) into keys from queued q;
  perform private.remove_objects('references', coalesce(keys, '{}'::text[]));
  return coalesce(cardinality(keys), 0);
end
$$;

-- What pg_cron runs every few minutes: sweep uploads, drop counters of windows long
-- past and the sweep records of objects that are gone.
create function private.sweep() returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  uploads integer := private.sweep_abandoned_uploads();
  counters integer;
  sweeps integer;
begin
  delete from private.request_counts c where c.window_start < now() - interval '1 day';
  get diagnostics counters = row_count;
  delete from private.upload_sweeps s
  where not exists (select 1 from storage.objects o where o.id = s.object_id);
  get diagnostics sweeps = row_count;
  return jsonb_build_object('uploads_queued', uploads, 'counters_pruned', counters,
                            'sweeps_forgotten', sweeps);
end
$$;
