"""OpenAI's Responses API served over chat completions: request translation and output events."""
