import { ReactNode } from "react";
import { UseQueryResult } from "@tanstack/react-query";
import { ErrorBox, Loading } from "./ErrorBox";

/** A query's three states in one place: loading, an inline error with retry, or the content. */
export function Resource<T>({ q, what, children }: { q: UseQueryResult<T>; what: string; children: (data: T) => ReactNode }) {
  if (q.error) return <ErrorBox error={q.error} retry={() => q.refetch()} />;
  if (q.data === undefined) return <Loading what={what} />;
  return <>{children(q.data)}</>;
}
