# A container test module (busybox sh): behaviour from process.settings in task.json.
# copy: copy the input to the output and write result.json; fail: exit 1; hang: sleep.
settings=$(tr -d '\n' < "$MERCURE_IN_DIR/task.json")
value() { echo "$settings" | sed -n "s/.*\"settings\": *{[^}]*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }
behaviour=$(value behaviour)
echo "container module starts: ${behaviour:-copy} as $(id -u)"
case "$behaviour" in
  fail) echo "container failure" >&2; exit 1 ;;
  hang) exec sleep 3600 ;;
esac
count=0
for f in "$MERCURE_IN_DIR"/*.dcm; do
  cp "$f" "$MERCURE_OUT_DIR/" && count=$((count + 1))
done
printf '{"label": "%s", "files": %d}\n' "$(value label)" "$count" > "$MERCURE_OUT_DIR/result.json"
echo "copied $count files"
