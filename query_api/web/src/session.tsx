import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useParams } from "react-router";
import { loadSession, ProjectRef, SessionInfo } from "./api";

export function useSession() {
  return useQuery<SessionInfo | null>({ queryKey: ["session"], queryFn: loadSession, staleTime: 60_000, retry: false });
}

/** The project named by the URL, and the signed-in user's role in it (undefined if not a member). */
export function useProject(): { projectId: string; project: ProjectRef | undefined } {
  const { projectId = "" } = useParams();
  const session = useSession();
  return { projectId, project: session.data?.projects.find((p) => p.id === projectId) };
}

export function useResetSession() {
  const qc = useQueryClient();
  return () => { qc.clear(); };
}
