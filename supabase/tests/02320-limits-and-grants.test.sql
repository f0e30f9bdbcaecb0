-- Limits on starting work and what an account starts with: concurrent generations and
-- design previews by tier (free 2, paid 4; profiles.tier, set by billing only), request
-- rate limits per user and task type (SQLSTATE PGRST: HTTP 429, code UT429, Retry-After),
-- and the sign-up grant (settings.signup_credits; 0 for anonymous sign-ups).
--   alice a11ce000-...-000000000001 (free): ready voice ...a001
--   bob   b0b00000-...-000000000002 (paid): ready voice ...b001
begin;
select plan(30);

select tests.create_user('limits-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('limits-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('limits-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('limits-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
update public.profiles set tier = 'paid' where id = 'b0b00000-0000-4000-8000-000000000002';

-- SQLSTATE, and the message and detail PostgREST reads as JSON, of a refused statement.
create function pg_temp.refusal(statement text) returns jsonb
language plpgsql as $$
declare
  state text;
  message text;
  detail text;
begin
  execute statement;
  return null;
exception when others then
  get stacked diagnostics state = returned_sqlstate, message = message_text, detail = pg_exception_detail;
  return jsonb_build_object('sqlstate', state, 'message', message::jsonb, 'detail', detail::jsonb);
end
$$;
grant execute on function pg_temp.refusal(text) to authenticated;

-- Tiers ---------------------------------------------------------------------------------------
select results_eq($$ select tier, max_concurrent_jobs from public.tier_limits order by max_concurrent_jobs $$,
  $$ values ('free', 2), ('paid', 4) $$, 'free accounts run 2 jobs at once, paid ones 4');
select tests.authenticate_as('limits-alice@utter.test');
select is((select tier from public.profiles), 'free', 'an account starts on the free tier and can read it');
select throws_ok($$ update public.profiles set tier = 'paid' $$,
  '42501', 'permission denied for table profiles', 'a user cannot move themselves to another tier');
select throws_ok($$ insert into public.tier_limits values ('vip', 100, 'x') $$,
  '42501', 'permission denied for table tier_limits', 'a user cannot add a tier');
select throws_ok($$ update public.tier_limits set max_concurrent_jobs = 100 $$,
  '42501', 'permission denied for table tier_limits', 'a user cannot raise a tier''s limit');

insert into public.generations (voice_id, text, language) values ('a11ce000-0000-4000-8000-00000000a001', 'One.', 'English');
insert into public.design_previews (instruct, text, language) values ('A calm narrator', 'Two.', 'English');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Three.', 'English') $$,
  'PT429', 'too many jobs at once: 2 generations or design previews are queued or running (limit 2 on the free tier)',
  'a free account''s third job at once is refused with PT429');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', 'Three.', 'English') $$,
  'PT429', 'too many jobs at once: 2 generations or design previews are queued or running (limit 2 on the free tier)',
  'design previews and generations share the cap');
select tests.upload_reference('limits-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a002', 'Clone', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav',
            'Ten or more characters.') $$,
  'a clone does not count against the tier''s job cap');
update public.tasks set cancel_requested_at = now() where type = 'generate';
select lives_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Three.', 'English') $$,
  'cancelling a job frees its place');

select tests.authenticate_as('limits-bob@utter.test');
insert into public.generations (voice_id, text, language)
select 'b0b00000-0000-4000-8000-00000000b001', 'Line ' || n, 'English' from generate_series(1, 4) n;
select is((select count(*)::int from public.tasks where status = 'pending'), 4, 'a paid account runs 4 jobs at once');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('b0b00000-0000-4000-8000-00000000b001', 'Five.', 'English') $$,
  'PT429', 'too many jobs at once: 4 generations or design previews are queued or running (limit 4 on the paid tier)',
  'a paid account''s fifth is refused');
select tests.authenticate_as_anon();
select is((select count(*)::int from public.tier_limits), 2, 'anon can read the tiers (for a pricing page)');

-- Request rate limits -----------------------------------------------------------------------------
-- Alice starts and cancels 30 generations in this minute: each one counts.
select tests.clear_authentication();
select tests.allow_concurrent_jobs(10);
select tests.authenticate_as('limits-alice@utter.test');
update public.tasks set cancel_requested_at = now() where status = 'pending';
do $$
begin
  for n in 1..28 loop  -- 'One.' and 'Three.' above were the first two in this window
    insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Again ' || n, 'English');
    update public.tasks set cancel_requested_at = now() where status = 'pending';
  end loop;
end
$$;
select is((select count(*)::int from public.generations), 30, 'thirty generations a minute are accepted');
select set_config('test.refusal', pg_temp.refusal($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'One too many.', 'English') $$)::text, true);
select is(current_setting('test.refusal')::jsonb ->> 'sqlstate', 'PGRST',
  'the thirty-first is refused with SQLSTATE PGRST (PostgREST''s own status and headers)');
select is(current_setting('test.refusal')::jsonb #>> '{message,code}', 'UT429', 'its error code is UT429');
select is(current_setting('test.refusal')::jsonb #>> '{message,message}',
  'too many generation requests: the limit is 30 per 1 minute', 'its message names the limit');
select is(current_setting('test.refusal')::jsonb #>> '{detail,status}', '429', 'PostgREST answers HTTP 429');
select ok((current_setting('test.refusal')::jsonb #>> '{detail,headers,Retry-After}')::int between 1 and 60,
  'with a Retry-After of the seconds left in the window');
select ok(current_setting('test.refusal')::jsonb #>> '{message,hint}' like 'Try again in % seconds.',
  'and a hint saying when to try again');
select is((select count(*)::int from public.generations), 30, 'the refused insert left no generation');
select lives_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', 'Still fine.', 'English') $$,
  'each task type has its own limit');
select tests.authenticate_as('limits-bob@utter.test');
update public.tasks set cancel_requested_at = now() where status = 'pending';
select lives_ok($$ insert into public.generations (voice_id, text, language)
    values ('b0b00000-0000-4000-8000-00000000b001', 'Bob is not limited by alice.', 'English') $$,
  'one user''s requests never count against another''s');
select tests.clear_authentication();
select results_eq($$ select task_type, max_requests, private.duration_words(per_window) from private.request_limits order by 1 $$,
  $$ values ('clone', 10, '1 hour'), ('design_preview', 20, '1 minute'), ('generate', 30, '1 minute'),
           ('purchase', 10, '1 hour'), ('transcribe', 20, '1 hour') $$,
  'clones, purchases and transcriptions are bounded too: at most 10, 10 and 20 an hour');

-- Sign-up grants ----------------------------------------------------------------------------------
insert into auth.users (id, aud, role, is_anonymous)
values ('a0000000-0000-4000-8000-0000000000a1', 'authenticated', 'authenticated', true);
select is((select credits from public.profiles where id = 'a0000000-0000-4000-8000-0000000000a1'), 0,
  'an anonymous sign-up starts with 0 credits');
select is((select count(*)::int from private.credit_ledger where user_id = 'a0000000-0000-4000-8000-0000000000a1'), 0,
  'and no grant in its ledger');
select tests.create_user('limits-carol@utter.test', 'c0000000-0000-4000-8000-0000000000c1');
select is(tests.credits('limits-carol@utter.test'), 100, 'an email sign-up starts with settings.signup_credits (100)');
update private.settings set signup_credits = 25;
select tests.create_user('limits-dave@utter.test', 'd0000000-0000-4000-8000-0000000000d1');
select is(tests.credits('limits-dave@utter.test'), 25, 'an operator changes the grant with one update');
update auth.users set is_anonymous = false, email = 'limits-anon@utter.test'
where id = 'a0000000-0000-4000-8000-0000000000a1';
update auth.users set is_anonymous = true where id = 'a0000000-0000-4000-8000-0000000000a1';
update auth.users set is_anonymous = false where id = 'a0000000-0000-4000-8000-0000000000a1';
select results_eq(
  $$ select credits, (select count(*)::int from private.credit_ledger l where l.user_id = p.id and l.reason = 'signup_grant')
     from public.profiles p where p.id = 'a0000000-0000-4000-8000-0000000000a1' $$,
  $$ values (25, 1) $$,
  'an anonymous account made permanent gets the sign-up grant once');
select ok(tests.credits_match_ledger(), 'every balance is still its ledger''s sum');

delete from realtime.messages;
update public.profiles set tier = 'paid' where id = 'c0000000-0000-4000-8000-0000000000c1';
select is((select event || ' ' || (payload #>> '{record,tier}') from realtime.messages
           where topic = 'user:c0000000-0000-4000-8000-0000000000c1'),
  'UPDATE paid', 'a change of tier reaches the owner''s topic');

select * from finish();
rollback;
