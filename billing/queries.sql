-- Every query the webhook receiver sends, by name. Its role (utter_billing) may
-- execute this one function and nothing else (supabase/migrations/*_credit_purchases.sql).

-- name: apply_stripe_event
select billing.apply_stripe_event(%(event)s::jsonb) as result;
