"""Provider integrations: translation of each provider's requests/responses into GenAI attributes."""
