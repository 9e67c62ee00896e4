import { useState } from "react";

/** How to send the first trace, with this server's own endpoint filled in. */
export function EmptyProject() {
  const endpoint = window.location.origin;
  const snippet = `pip install evalforge   # or: pip install ./sdk

import evalforge
from openai import OpenAI

evalforge.init(api_key="ef_…", endpoint="${endpoint}")
client = evalforge.wrap(OpenAI())
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])`;
  const [copied, setCopied] = useState(false);
  return (
    <section className="empty" aria-labelledby="empty-title">
      <h2 id="empty-title">No traces yet</h2>
      <p>Send your first trace: create an API key in Settings, then run this in your app.
        Any OpenTelemetry exporter also works: <code>{endpoint}/v1/traces</code>.</p>
      <pre className="snippet" data-testid="sdk-snippet">{snippet}</pre>
      <button type="button" onClick={() => navigator.clipboard?.writeText(snippet).then(() => setCopied(true))}>
        {copied ? "Copied" : "Copy snippet"}
      </button>
    </section>
  );
}
