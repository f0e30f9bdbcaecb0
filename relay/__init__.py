"""A local development stand-in for Supabase Realtime's "Broadcast from Database".

It speaks the Realtime websocket protocol (Phoenix channels) at `/realtime/v1/websocket`,
authorises private channels by the RLS policies on `realtime.messages`, as Supabase
does, and relays the private broadcasts the database writes there. Production uses
Supabase Realtime; nothing here runs against a Supabase project. See
docs/realtime-relay.md.
"""
