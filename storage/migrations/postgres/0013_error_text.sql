-- A job's reason (error_message) as the bot wrote it: a message id and its parameters (JSON, see
-- bot.i18n.to_json), so cards, results and /job show it in each reader's language. error_message
-- keeps the English words for logs, the audit trail and operators.
ALTER TABLE jobs ADD COLUMN error_text TEXT;
