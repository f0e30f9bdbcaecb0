"""The listener: reads Utter's pgmq queues, runs each task on a speech engine, stores
the audio and settles the task through the database's `worker` functions."""
