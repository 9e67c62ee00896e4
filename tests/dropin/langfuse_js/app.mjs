// A small app instrumented with the unmodified Langfuse JS SDK, configured by environment only
// (LANGFUSE_BASE_URL, LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY). Prints the ids it produced as JSON.
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { LangfuseSpanProcessor } from "@langfuse/otel";
import { propagateAttributes, startActiveObservation, startObservation } from "@langfuse/tracing";
import { LangfuseClient } from "@langfuse/client";

const provider = new NodeTracerProvider({ spanProcessors: [new LangfuseSpanProcessor()] });
provider.register();
const langfuse = new LangfuseClient();
const projects = await langfuse.api.projects.get();

const ids = { projectName: projects.data[0].name };
await propagateAttributes({ userId: "js-user", sessionId: "js-session", tags: ["js"], traceName: "js-trace" }, async () => {
  await startActiveObservation("js-agent", async (root) => {
    const generation = startObservation("js-llm", {
      model: "gpt-4o-mini",
      modelParameters: { temperature: 0.1 },
      input: [{ role: "user", content: "Hello from JS" }],
    }, { asType: "generation" });
    generation.update({ output: { role: "assistant", content: "Hi!" }, usageDetails: { input: 50, output: 10 } });
    generation.end();
    root.update({ input: "js question", output: "js answer" });
    Object.assign(ids, { traceId: root.traceId, rootId: root.id, generationId: generation.id });
  });
});
langfuse.score.create({ traceId: ids.traceId, observationId: ids.generationId, name: "js-score", value: 1,
  dataType: "NUMERIC", comment: "from js" });
await langfuse.score.flush();
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify(ids));
