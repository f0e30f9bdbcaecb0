-- The reactive core: a user's insert is validated, charged, turned into a task and
-- enqueued in pgmq in the inserting transaction, so a rollback leaves nothing behind.
-- Errors a client can cause carry SQLSTATEs PostgREST maps to HTTP statuses:
--   22023 invalid input (400), PT402 not enough credits (402), PT429 too many
--   unfinished tasks (429).

select pgmq.create('generate');
select pgmq.create('design_preview');
select pgmq.create('clone');
select pgmq.create('storage_cleanup');  -- objects of deleted rows, removed by the listener

-- Product rules, one home each ---------------------------------------------------

create function private.signup_credits() returns integer
language plpgsql immutable set search_path = '' as $$ begin return 100; end $$;

create function private.max_unfinished_tasks() returns integer
language plpgsql immutable set search_path = '' as $$ begin return 10; end $$;

-- Generation: 1 credit per started 500 characters; design preview: 1; clone: free.
create function private.task_cost(task_type text, text_length integer) returns integer
language plpgsql immutable set search_path = '' as $$
begin
  return case task_type
    when 'generate' then greatest(1, ceil(text_length / 500.0)::integer)
    when 'design_preview' then 1
    else 0
  end;
end
$$;

-- Where the listener stores each task's output (bucket, key), so the conventions in
-- docs/client-contract.md live in one place. (The helpers on hot paths are PL/pgSQL,
-- whose plans are cached: a SQL function called from PL/pgSQL is planned per call.)
create function private.output_object(task public.tasks) returns jsonb
language plpgsql stable set search_path = '' as $$
begin
  return case task.type
    when 'generate' then jsonb_build_object(
      'bucket', 'generations', 'key', task.user_id || '/' || task.generation_id || '.wav')
    when 'design_preview' then jsonb_build_object(
      'bucket', 'references', 'key', task.user_id || '/previews/' || task.design_preview_id || '.wav')
    when 'clone' then jsonb_build_object(
      'bucket', 'references', 'key', task.user_id || '/' || task.voice_id || '/normalized.wav')
  end;
end
$$;

create function private.invalid(message text, hint text default null) returns void
language plpgsql set search_path = '' as $$
begin
  raise exception using errcode = '22023', message = message, hint = coalesce(hint, '');
end
$$;

create function private.task_transition_allowed(from_status text, to_status text) returns boolean
language plpgsql immutable set search_path = '' as $$
begin
  return (from_status, to_status) in (
    ('pending', 'pending'),        -- bookkeeping while queued
    ('pending', 'processing'),     -- claimed by a listener
    ('pending', 'cancelled'),      -- cancelled while queued
    ('pending', 'failed'),         -- unprocessable before it ran
    ('processing', 'processing'),  -- progress, heartbeats, re-claims after a crash
    ('processing', 'pending'),     -- retry after a transient error, or handed back
    ('processing', 'completed'),
    ('processing', 'failed'),
    ('processing', 'cancelled')
  );
end
$$;

-- Credits -----------------------------------------------------------------------

create function private.handle_new_user() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into public.profiles (id, credits) values (new.id, private.signup_credits());
  insert into private.credit_ledger (user_id, delta, reason)
  values (new.id, private.signup_credits(), 'signup_grant');
  return new;
end
$$;
create trigger on_auth_user_created after insert on auth.users
  for each row execute function private.handle_new_user();

-- Refunds a failed or cancelled task's charge; the unique index makes it once only,
-- whatever order failure, cancel and retry arrive in.
create function private.refund(task public.tasks) returns void
language plpgsql security definer set search_path = '' as $$
declare
  refunded integer;
begin
  if task.cost = 0 then
    return;
  end if;
  insert into private.credit_ledger (user_id, task_id, delta, reason)
  values (task.user_id, task.id, task.cost, 'refund')
  on conflict do nothing;
  get diagnostics refunded = row_count;
  if refunded = 1 then
    update public.profiles set credits = credits + task.cost, updated_at = now()
    where id = task.user_id;
  end if;
end
$$;

-- The one exception: deleting an account removes its ledger (the foreign keys'
-- cascade, then set null from its deleted tasks).
create function private.forbid_ledger_changes() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op = 'TRUNCATE' then
    raise exception 'private.credit_ledger is append-only (TRUNCATE refused)';
  end if;
  if tg_op = 'DELETE' and not exists (select 1 from auth.users u where u.id = old.user_id) then
    return old;
  end if;
  if tg_op = 'UPDATE' and old.task_id is not null and new.task_id is null
     and (to_jsonb(new) - 'task_id') = (to_jsonb(old) - 'task_id')
     and not exists (select 1 from public.tasks t where t.id = old.task_id) then
    return new;
  end if;
  raise exception 'private.credit_ledger is append-only (% refused)', tg_op;
end
$$;
create trigger credit_ledger_append_only before update or delete on private.credit_ledger
  for each row execute function private.forbid_ledger_changes();
create trigger credit_ledger_never_truncated before truncate on private.credit_ledger
  for each statement execute function private.forbid_ledger_changes();

-- Tasks -------------------------------------------------------------------------

create function private.enqueue(queue text, body jsonb) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  msg_id bigint;
begin
  msg_id := pgmq.send(queue, body);
  -- Delivered at commit, so a listener wakes only for work it can see.
  perform pg_notify('utter_jobs', queue);
  return msg_id;
end
$$;

-- Charges the user, checks the unfinished-task limit, creates the task and enqueues
-- its message (ids only, never user text), all in the caller's transaction.
create function private.open_task(
  owner uuid,
  task_type text,
  subject_id uuid,
  text_length integer default 0
) returns uuid
language plpgsql security definer set search_path = '' as $$
declare
  balance integer;
  unfinished integer;
  price integer := private.task_cost(task_type, text_length);
  new_task_id uuid := gen_random_uuid();
  new_msg_id bigint;
begin
  -- The profile row lock serialises one user's concurrent inserts, so neither the
  -- balance nor the unfinished-task count can be raced past.
  select credits into balance from public.profiles where id = owner for update;
  if not found then
    raise exception using errcode = '22023', message = 'no profile for user ' || owner;
  end if;

  select count(*) into unfinished from public.tasks
  where user_id = owner and status in ('pending', 'processing');
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

-- Ends an unfinished task as cancelled now. A queued message is deleted; a running
-- one stays with its listener, which is told to stop and archives it. `detach` drops
-- the link to a subject that is being deleted in this same statement.
create function private.cancel_task(task_id uuid, reason text, detach boolean default false) returns void
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  select * into task from public.tasks where id = task_id for update;
  if not found or task.status not in ('pending', 'processing') then
    return;
  end if;
  -- When the account is being deleted its tasks go with it: only the work is stopped.
  if exists (select 1 from auth.users u where u.id = task.user_id) then
    update public.tasks
    set status = 'cancelled', error = reason, cancel_requested_at = coalesce(cancel_requested_at, now()),
        generation_id = case when detach then null else generation_id end,
        design_preview_id = case when detach then null else design_preview_id end,
        voice_id = case when detach then null else voice_id end
    where id = task_id;
  end if;
  if task.status = 'pending' and task.msg_id is not null then
    perform pgmq.delete(task.type, task.msg_id);
  else
    perform pg_notify('utter_cancel', task_id::text);
  end if;
end
$$;

create function private.before_task_update() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  changed text[];
begin
  -- A client's cancel request (the only column it may write).
  if old.cancel_requested_at is null and new.cancel_requested_at is not null
     and new.status = old.status then
    if old.status in ('completed', 'failed', 'cancelled') then
      return null;  -- already over: cancelling is a no-op, not an error
    end if;
    new.cancel_requested_at := now();
    new.status := 'cancelled';
    new.error := 'cancelled by the user';
    if old.status = 'pending' and old.msg_id is not null then
      perform pgmq.delete(old.type, old.msg_id);
    else
      perform pg_notify('utter_cancel', old.id::text);
    end if;
  elsif old.cancel_requested_at is not null and new.cancel_requested_at is distinct from old.cancel_requested_at then
    new.cancel_requested_at := old.cancel_requested_at;  -- a cancel cannot be taken back
  end if;

  if old.status in ('completed', 'failed', 'cancelled') then
    changed := array(select n.key from jsonb_each(to_jsonb(new)) n
                     where n.value is distinct from to_jsonb(old) -> n.key and n.key <> 'updated_at');
    if cardinality(changed) = 0 then
      return null;  -- nothing to change, e.g. a repeated cancel
    end if;
    -- Its generation, preview or voice was deleted (the foreign keys set null): the
    -- ended task stays as history, detached.
    if changed <@ array['generation_id', 'design_preview_id', 'voice_id']
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
create trigger tasks_before_update before update on public.tasks
  for each row execute function private.before_task_update();

-- Keeps the task's subject (generation, preview, voice) in step, refunds failed or
-- cancelled work and removes whatever output its attempts may have stored. Completion data is written by worker.complete_task before the
-- task turns completed, so here completion needs nothing more.
create function private.after_task_update() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.status = old.status then
    return null;
  end if;
  if new.status in ('failed', 'cancelled') then
    perform private.refund(new);
    if new.attempts > 0 then
      -- An attempt may have stored its output before it was stopped (a listener that
      -- died between upload and completion): nothing may keep it.
      perform private.remove_objects(private.output_object(new) ->> 'bucket',
                                     array[private.output_object(new) ->> 'key']);
    end if;
  end if;
  if new.type = 'generate' then
    update public.generations
    set status = new.status, error = new.error, updated_at = now()
    where id = new.generation_id and status is distinct from new.status and status <> 'completed';
  elsif new.type = 'design_preview' then
    update public.design_previews
    set status = new.status, error = new.error, updated_at = now()
    where id = new.design_preview_id and status is distinct from new.status and status <> 'completed';
  elsif new.type = 'clone' and new.status in ('failed', 'cancelled') then
    update public.voices
    set status = new.status, error = new.error, updated_at = now()
    where id = new.voice_id and status = 'pending';
  end if;
  return null;
end
$$;
create trigger tasks_after_update after update on public.tasks
  for each row execute function private.after_task_update();

-- Inserts from the browser ----------------------------------------------------

create function private.check_language(language text, for_design boolean) returns void
language plpgsql stable set search_path = '' as $$
declare
  lang public.languages;
begin
  select * into lang from public.languages l where l.name = language;
  if not found then
    perform private.invalid(format('unknown language %L', language),
      'Use one of: ' || (select string_agg(name, ', ' order by sort_order) from public.languages));
  end if;
  if for_design and not lang.allowed_for_design then
    perform private.invalid('a voice design needs an explicit language, not Auto');
  end if;
end
$$;

create function private.check_text_length(what text, value text, max_length integer) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if value is null or char_length(value) = 0 then
    perform private.invalid(format('%s must not be empty', what));
  elsif char_length(value) > max_length then
    perform private.invalid(format('%s is %s characters long; the limit is %s',
                                   what, char_length(value), max_length));
  end if;
end
$$;

-- The caller owns what they insert, whatever user_id they sent. The service role
-- (server code acting for a user) must name the user itself.
create function private.inserting_user(claimed uuid) returns uuid
language plpgsql stable set search_path = '' as $$
declare
  caller uuid := auth.uid();
begin
  if caller is not null then
    if claimed is not null and claimed <> caller then
      perform private.invalid('user_id must be your own user id');
    end if;
    return caller;
  end if;
  if claimed is null then
    perform private.invalid('user_id is required when not acting as a signed-in user');
  end if;
  return claimed;
end
$$;

create function private.before_design_preview_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.user_id := private.inserting_user(new.user_id);
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
create trigger design_previews_before_insert before insert on public.design_previews
  for each row execute function private.before_design_preview_insert();

create function private.after_design_preview_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform private.open_task(new.user_id, 'design_preview', new.id);
  return null;
end
$$;
create trigger design_previews_after_insert after insert on public.design_previews
  for each row execute function private.after_design_preview_insert();

create function private.before_voice_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  preview public.design_previews;
  expected_prefix text;
begin
  new.user_id := private.inserting_user(new.user_id);
  perform private.check_text_length('name', btrim(new.name), 100);
  new.name := btrim(new.name);
  new.error := null;
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
  if new.reference_transcript is null or char_length(btrim(new.reference_transcript)) < 10 then
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
  if not exists (select 1 from storage.objects o
                 where o.bucket_id = 'references' and o.name = new.reference_object_key) then
    perform private.invalid(format('no uploaded reference at references/%s', new.reference_object_key),
      'Upload the recording before inserting the voice.');
  end if;
  return new;
end
$$;
create trigger voices_before_insert before insert on public.voices
  for each row execute function private.before_voice_insert();

create function private.after_voice_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.source = 'uploaded' then
    perform private.open_task(new.user_id, 'clone', new.id);
  end if;
  return null;
end
$$;
create trigger voices_after_insert after insert on public.voices
  for each row execute function private.after_voice_insert();

create function private.before_generation_insert() returns trigger
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
create trigger generations_before_insert before insert on public.generations
  for each row execute function private.before_generation_insert();

create function private.after_generation_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform private.open_task(new.user_id, 'generate', new.id, char_length(new.text));
  return null;
end
$$;
create trigger generations_after_insert after insert on public.generations
  for each row execute function private.after_generation_insert();

-- Deletes ---------------------------------------------------------------------

create function private.remove_objects(bucket text, keys text[]) returns void
language plpgsql security definer set search_path = '' as $$
declare
  wanted text[] := array(select distinct k from unnest(keys) k where k is not null);
begin
  if cardinality(wanted) > 0 then
    perform private.enqueue('storage_cleanup', jsonb_build_object('bucket', bucket, 'keys', to_jsonb(wanted)));
  end if;
end
$$;

create function private.before_generation_delete() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  task_id uuid;
begin
  for task_id in select id from public.tasks where generation_id = old.id and status in ('pending', 'processing') loop
    perform private.cancel_task(task_id, 'generation deleted', detach => true);
  end loop;
  perform private.remove_objects('generations',
    array[old.audio_object_key, old.user_id || '/' || old.id || '.wav']);
  return old;
end
$$;
create trigger generations_before_delete before delete on public.generations
  for each row execute function private.before_generation_delete();

create function private.before_voice_delete() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  task_id uuid;
begin
  for task_id in select t.id from public.tasks t
                 where t.voice_id = old.id and t.status in ('pending', 'processing') loop
    perform private.cancel_task(task_id, 'voice deleted', detach => true);
  end loop;
  for task_id in select t.id from public.tasks t
                 join public.generations g on g.id = t.generation_id
                 where g.voice_id = old.id and t.status in ('pending', 'processing') loop
    perform private.cancel_task(task_id, 'voice deleted');
  end loop;
  -- The voice owns its folder. A designed voice's audio is its preview's: it goes with
  -- the voice only once the preview is gone (design_preview_id set null), otherwise the
  -- preview would stay completed, and could be saved again, with its audio deleted.
  perform private.remove_objects('references',
    case when old.design_preview_id is null
         then array[old.reference_object_key, old.normalized_object_key] else '{}'::text[] end
    || array(select o.name from storage.objects o
             where o.bucket_id = 'references' and o.name like old.user_id || '/' || old.id || '/%'));
  return old;
end
$$;
create trigger voices_before_delete before delete on public.voices
  for each row execute function private.before_voice_delete();

create function private.before_design_preview_delete() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  task_id uuid;
begin
  for task_id in select id from public.tasks where design_preview_id = old.id and status in ('pending', 'processing') loop
    perform private.cancel_task(task_id, 'design preview deleted', detach => true);
  end loop;
  -- Once saved as a voice, the audio belongs to the voice.
  if not exists (select 1 from public.voices v where v.design_preview_id = old.id) then
    perform private.remove_objects('references',
      array[old.audio_object_key, old.user_id || '/previews/' || old.id || '.wav']);
  end if;
  return old;
end
$$;
create trigger design_previews_before_delete before delete on public.design_previews
  for each row execute function private.before_design_preview_delete();
