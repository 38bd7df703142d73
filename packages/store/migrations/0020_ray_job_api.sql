-- Jobs submitted through Ray's job API (or gpumesh's) keep the runtime_env and metadata they were submitted
-- with, as JSON text, so Ray's clients read back what they sent. '{}' for jobs that had none.
ALTER TABLE cluster_jobs ADD COLUMN runtime_env TEXT NOT NULL DEFAULT '{}';
ALTER TABLE cluster_jobs ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
